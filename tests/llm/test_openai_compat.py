"""OpenAICompatBackend end to end against a real `flexrl serve` process (real HTTP, the embedded model)."""

from __future__ import annotations

import sys

import pytest

from flexrl.llm.base import LLMBackend
from flexrl.llm.infer import infer
from flexrl.llm.openai_compat import UNCHOSEN_LOGPROB, LLMServerError, OpenAICompatBackend
from flexrl.planners.llm_planner import LLMPlanner


@pytest.fixture(scope="module")
def served(server, api_key):
    backend = OpenAICompatBackend(server.url, api_key=api_key, timeout=120)
    yield backend
    backend.close()


def test_implements_protocol_and_finds_the_model(served, local_backend):
    assert isinstance(served, LLMBackend)
    served.generate("Hi", 1)
    assert served.name == local_backend.name  # resolved through /v1/models


def test_chat_prompt_is_rendered_like_the_local_model(served, local_backend, server):
    assert served.chat_prompt("Be brief.", "Go!") == local_backend.chat_prompt("Be brief.", "Go!")
    jinja = OpenAICompatBackend(server.url, chat_template=local_backend.tokenizer.chat_template)
    assert jinja.chat_prompt("Be brief.", "Go!") == local_backend.chat_prompt("Be brief.", "Go!")


def test_scores_equal_the_local_backend(served, local_backend, planner_requests):
    for request in planner_requests(range(30, 33)):
        got = served.score_options(request.prompt, list(request.options), request.cache_prefix)
        expected = local_backend.score_options(request.prompt, list(request.options), request.cache_prefix)
        assert [s.n_tokens for s in got] == [s.n_tokens for s in expected]
        assert [s.logprob for s in got] == pytest.approx([s.logprob for s in expected], abs=1e-3)


def test_generation_equals_the_local_backend(served, local_backend):
    prompt = local_backend.chat_prompt("You are brief.", "Name a fruit.")
    assert served.generate(prompt, 10) == local_backend.generate(prompt, 10)


def test_choice_mode_picks_the_most_likely_option(server, api_key, local_backend, planner_requests):
    chooser = OpenAICompatBackend(server.url, api_key=api_key, scoring="choice", timeout=120)
    request = planner_requests([40])[0]
    options = list(request.options)
    scores = chooser.score_options(request.prompt, options)
    local = local_backend.score_options(request.prompt, options)
    best = max(range(len(options)), key=lambda i: local[i].logprob)
    assert [s.logprob for s in scores] == [0.0 if i == best else UNCHOSEN_LOGPROB for i in range(len(options))]


def test_agent_decides_identically_through_the_server(server, api_key, episode, local_run, tmp_path):
    backend = OpenAICompatBackend(server.url, api_key=api_key, timeout=120)
    run = episode(tmp_path, LLMPlanner(backend))
    assert len(local_run.decisions) >= 3
    assert run.summary["fallbacks"] == 0 and run.summary["steps"] == local_run.summary["steps"]
    assert [(d["step"], d["call"]) for d in run.decisions] == [(d["step"], d["call"]) for d in local_run.decisions]
    for served_d, local_d in zip(run.decisions, local_run.decisions):
        assert served_d["scores"].keys() == local_d["scores"].keys()
        for call, score in local_d["scores"].items():
            assert served_d["scores"][call] == pytest.approx(score, abs=2e-3)


@pytest.mark.parametrize(("mode", "kind"), [("500", "http"), ("garbage", "bad_response"), ("nonsense", "bad_response"),
                                            ("hang", "timeout")])
def test_server_faults_become_llm_server_errors(misbehaving, mode, kind):
    bad = misbehaving(mode)
    backend = OpenAICompatBackend(bad.url, model="m", timeout=0.5)
    with pytest.raises(LLMServerError) as err:
        backend.score_options("prompt", [" a", " b"])
    assert err.value.kind == kind and err.value.retryable


def test_refused_connection_and_client_errors(server, api_key):
    closed = OpenAICompatBackend(f"http://127.0.0.1:{_free_port()}", model="m", timeout=2)
    with pytest.raises(LLMServerError) as err:
        closed.generate("x", 1)
    assert err.value.kind == "connection" and err.value.retryable
    for backend, status in ((OpenAICompatBackend(server.url, api_key="wrong", timeout=30), 401),
                            (OpenAICompatBackend(server.url, model="other", api_key=api_key, timeout=30), 404)):
        with pytest.raises(LLMServerError) as err:
            backend.score_options("x", [" y"])
        assert (err.value.kind, err.value.status, err.value.retryable) == ("http", status, False)


def test_bad_settings_and_missing_extra(monkeypatch):
    for kwargs in ({"scoring": "guided"}, {"timeout": 0}, {"echo_max_tokens": 5}):
        with pytest.raises(ValueError):
            OpenAICompatBackend("http://127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatBackend("127.0.0.1:8000")
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"flexrl\[serve\]"):
        OpenAICompatBackend("http://127.0.0.1:1")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_infer_scores_or_generates_through_either_backend(served, local_backend):
    ask = dict(text="Is the sky blue?", system="Answer yes or no.", options=[" yes", " no"])
    local, remote = infer(local_backend, **ask), infer(served, **ask)
    assert remote.best == local.best and remote.text is None
    assert [s[1] for s in remote.scores] == pytest.approx([s[1] for s in local.scores], abs=1e-3)
    assert local.lines()[-1].startswith(f"best: {local.best}") and len(local.lines()) == 3
    generated = infer(served, "Name a fruit.", max_new_tokens=6)
    assert generated.scores is None and generated.text == infer(local_backend, "Name a fruit.", max_new_tokens=6).text
    assert infer(local_backend, "The capital of France is", raw=True, max_new_tokens=2).prompt == "The capital of France is"
    for bad in (dict(text=""), dict(text="x", options=[" a", " a"]), dict(text="x", options=[]),
                dict(text="x", max_new_tokens=0)):
        with pytest.raises(ValueError):
            infer(local_backend, **bad)

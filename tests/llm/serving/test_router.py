"""`flexrl serve`'s application over a fake model: every error an OpenAI-style JSON body, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from fake_engine import MODEL
from serve_strategies import JSON, shaped

from flexrl.llm.serving.protocol import ChatCompletionRequest, CompletionRequest

ENDPOINTS = {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatCompletionRequest}
BASES = {"/v1/completions": {"model": MODEL, "prompt": "Hi", "max_tokens": 4},
         "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}}


def assert_answer(answer, status: int | None = None) -> dict:
    """A JSON answer; an error is one line in the OpenAI shape with its own status as code."""
    assert answer.status_code != 500, answer.text
    if status is not None:
        assert answer.status_code == status, answer.text
    if answer.headers["content-type"].startswith("text/event-stream"):
        events = [line.removeprefix("data: ") for line in answer.text.split("\n\n") if line]
        assert events[-1] == "[DONE]" and not any('"error"' in e for e in events), answer.text
        return {"events": [json.loads(e) for e in events[:-1]]}
    body = answer.json()
    if answer.status_code >= 400:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == answer.status_code
        assert error["message"] and "\n" not in error["message"] and "Traceback" not in error["message"]
        assert error["type"] == ("authentication_error" if answer.status_code == 401 else "invalid_request_error")
    return body


SHAPED = st.sampled_from(list(ENDPOINTS)).flatmap(lambda path: st.tuples(st.just(path), shaped(ENDPOINTS[path], BASES[path])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=SHAPED)
def test_request_shaped_bodies_never_give_a_500(client, case):
    path, body = case
    assert_answer(client.post(path, content=json.dumps(body).encode()))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(ENDPOINTS)), body=JSON)
def test_arbitrary_json_bodies_never_give_a_500(client, path, body):
    answer = client.post(path, content=json.dumps(body).encode())
    assert answer.status_code in (400, 404)
    assert_answer(answer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(ENDPOINTS)), body=st.binary(max_size=80))
def test_arbitrary_bytes_never_give_a_500(client, path, body):
    assert_answer(client.post(path, content=body), 400)


@pytest.mark.parametrize("raw", [b'{"model": "fake-model", "prompt": "\\ud800abc"}',
                                 b'{"model": "fake-model", "messages": [{"role": "user", "content": "\\udfff"}]}'])
def test_a_lone_surrogate_is_a_400(client, raw):
    path = "/v1/chat/completions" if b"messages" in raw else "/v1/completions"
    body = assert_answer(client.post(path, content=raw), 400)
    assert "lone surrogate" in body["error"]["message"]


def test_a_field_name_with_a_newline_is_escaped_in_the_error(client):
    body = assert_answer(client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "bad\nname": 1}), 400)
    assert "unknown field 'bad\\nname'" in body["error"]["message"] and body["error"]["param"] == "bad\nname"


@pytest.mark.parametrize(("body", "message"), [
    ({"prompt": "Hi", "max_tokens": 10**12}, "max_tokens is 1000000000000; this server allows at most max_new_tokens=512 "
                                             "(raise it with flexrl serve --max-new-tokens)"),
    ({"prompt": ["Hi"] * 65}, "'prompt' has 65 entries; this server allows at most max_prompts=64 (raise it with flexrl serve --max-prompts)"),
    ({"prompt": "x" * 5000}, "prompt has 5000 tokens; this server allows at most max_prompt_tokens=4096"),
    ({"prompt": "x" * 200_000}, "prompt has 200000 characters"),
    ({"prompt": ["x" * 300] * 64, "max_tokens": 1}, "this request needs 19264 tokens (19200 in prompts, 64 to generate); "
                                                    "this server allows at most max_request_tokens=16384 (raise it with flexrl serve --max-request-tokens)"),
    ({"prompt": "x" * 2000, "max_tokens": 100}, "prompt (2000 tokens) plus max_tokens (100) exceeds the model's context of 2048 tokens"),
    ({"prompt": "Hi", "structured_outputs": {"choice": ["a"] * 65}}, "max_prompts=64"),
    ({"model": "gpt-4", "prompt": "Hi"}, "model 'gpt-4' not found; this server serves 'fake-model'"),
])
def test_limits_are_4xx_naming_the_limit_and_flag(client, fake_engine, body, message):
    answer = client.post("/v1/completions", json={"model": MODEL, **body})
    error = assert_answer(answer)["error"]
    assert answer.status_code == (404 if "gpt-4" in message else 400) and message in error["message"]
    assert not fake_engine.jobs  # refused before any model work


def test_64_prompts_within_the_limits_are_answered(client, fake_engine):
    answer = assert_answer(client.post("/v1/completions", json={"model": MODEL, "prompt": [f"p{i}" for i in range(64)],
                                                                "max_tokens": 3}), 200)
    assert [c["index"] for c in answer["choices"]] == list(range(64)) and answer["usage"]["completion_tokens"] == 64 * 3
    assert fake_engine.jobs == [("generate", (64, 3, 0))]  # one job for the request: one place in the batcher's line


def test_limits_follow_the_config(make_client):
    small = make_client(max_prompt_tokens=8, max_prompts=2, max_new_tokens=4, max_request_tokens=20)
    cases = [({"prompt": "123456789"}, "max_prompt_tokens=8"), ({"prompt": ["a", "b", "c"]}, "max_prompts=2"),
             ({"prompt": "a", "max_tokens": 5}, "max_new_tokens=4"), ({"prompt": ["12345678", "12345678"], "max_tokens": 3},
                                                                     "max_request_tokens=20")]
    for body, limit in cases:
        assert limit in assert_answer(small.post("/v1/completions", json={"model": MODEL, **body}), 400)["error"]["message"]
    chat = small.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "a"}] * 3})
    assert "max_prompts=2" in assert_answer(chat, 400)["error"]["message"]


def test_chat_needs_a_template(make_client, fake_engine):
    fake_engine.has_chat_template = False
    answer = make_client().post("/v1/chat/completions", json=BASES["/v1/chat/completions"])
    assert "no chat template" in assert_answer(answer, 400)["error"]["message"]


def test_body_size_paths_methods_and_the_api_key(make_client):
    client = make_client(max_request_bytes=1000)
    assert "max_request_bytes=1000" in assert_answer(client.post("/v1/completions", content=b"x" * 2000), 413)["error"]["message"]
    assert "no route /v1/nothing" in assert_answer(client.get("/v1/nothing"), 404)["error"]["message"]
    assert "GET /v1/completions is not allowed" in assert_answer(client.get("/v1/completions"), 405)["error"]["message"]
    keyed = make_client(host="0.0.0.0", api_key="k")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k"}):
        for method, path in (("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/completions"), ("GET", "/nothing")):
            assert "API key" in assert_answer(keyed.request(method, path, headers=headers), 401)["error"]["message"]
    assert keyed.get("/health", headers={"Authorization": "Bearer k"}).json()["status"] == "ok"


def test_an_engine_failure_is_a_json_500(client, fake_engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(fake_engine, "generate", broken)
    answer = client.post("/v1/completions", json=BASES["/v1/completions"])
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "server_error" and "RuntimeError: CUDA out of memory" in error["message"]

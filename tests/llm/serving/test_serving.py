"""The serving logic over a fake model: text deltas and stop strings, echo log-probs, and streaming as the
official `openai` client reads it."""

from __future__ import annotations

import json

import pytest
from fake_engine import CONTINUATION, EOS_MARK, MODEL, FakeEngine, token_logprob
from openai import OpenAI

from flexrl.llm.batch_types import Generation
from flexrl.llm.serving.serving import TextStream


def push_all(stream: TextStream, text: str, sizes: list[int], stopped: bool = False) -> list:
    """Push ``text``'s bytes in slices of ``sizes``; returns the events."""
    data, events, at = list(text.encode()), [], 0
    for i, size in enumerate(sizes):
        new = data[at : at + size]
        at += size
        event = stream.push(Generation(new, [-0.5] * len(new), [[] for _ in new], stopped and i == len(sizes) - 1))
        if event is not None:
            events.append(event)
    return events


def test_a_stop_string_across_slices_never_goes_out():
    events = push_all(TextStream(FakeEngine(), 0, ["o w"], limit=100), "Hello world", [3, 2, 3, 3])
    assert "".join(e.text for e in events) == "Hell" and events[-1].finish == "stop"
    assert all("o w" not in e.text for e in events)
    assert sum(len(e.tokens) for e in events) == 4  # the tokens up to the cut, as usage counts them


def test_text_is_held_back_inside_a_character_and_the_finish_reasons():
    events = push_all(TextStream(FakeEngine(), 0, [], limit=6), "aé€", [2, 2, 2])  # a, é (2 bytes), € (3 bytes)
    assert [e.text for e in events] == ["a", "é", "€"] and [e.finish for e in events] == [None, None, "length"]
    events = push_all(TextStream(FakeEngine(), 0, [], limit=100), "abc", [3], stopped=True)
    assert [(e.text, e.finish) for e in events] == [("abc", "stop")]


def test_a_stop_string_at_the_start_gives_no_text():
    events = push_all(TextStream(FakeEngine(), 0, ["He"], limit=100), "Hello", [5])
    assert [(e.text, e.tokens, e.finish) for e in events] == [("", [], "stop")]


def test_echo_logprobs_cover_the_prompt_then_the_answer(client):
    body = {"model": MODEL, "prompt": ["Hi é", "Yo"], "max_tokens": 3, "echo": True, "logprobs": 2}
    answer = client.post("/v1/completions", json=body).json()
    first = answer["choices"][0]
    lp = first["logprobs"]
    assert first["text"] == "Hi é" + CONTINUATION[:3] and first["finish_reason"] == "length"
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == [token_logprob(t) for t in list("Hi é".encode())[1:] + list(CONTINUATION[:3].encode())]
    assert lp["text_offset"] == [0, 1, 2, 3, 3, 4, 5, 6]  # é is two byte tokens at one character
    assert all(len(top) <= 2 for top in lp["top_logprobs"][1:])
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}


def test_choices_and_zero_tokens(client, fake_engine):
    answer = client.post("/v1/completions", json={"model": MODEL, "prompt": ["a", "b"], "structured_outputs": {"choice": ["x", "yy"]}}).json()
    # The fake's log-prob of byte t is -((t % 7) + 1) / 10: "x" (120) scores -0.2, "yy" (121 twice) -0.6.
    assert [c["text"] for c in answer["choices"]] == ["x", "x"] and [c["finish_reason"] for c in answer["choices"]] == ["stop"] * 2
    assert [kind for kind, _ in fake_engine.jobs] == ["score", "score"]
    answer = client.post("/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 0}).json()
    assert answer["choices"][0]["text"] == "" and answer["choices"][0]["finish_reason"] == "length"


def sse(answer) -> list:
    events = [line.removeprefix("data: ") for line in answer.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_completion_stream_format(client):
    body = {"model": MODEL, "prompt": ["A", f"B {EOS_MARK}"], "max_tokens": 9, "stream": True, "echo": True,
            "logprobs": 0, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/completions", json=body) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        answer.read()
    chunks = sse(answer)
    assert all(c["object"] == "text_completion" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    texts = {0: "", 1: ""}
    finishes = {}
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        texts[choice["index"]] += choice["text"]
        finishes[choice["index"]] = choice["finish_reason"]
        assert len(choice["logprobs"]["tokens"]) == len(choice["logprobs"]["text_offset"])
    assert texts == {0: "A" + CONTINUATION[:9], 1: f"B {EOS_MARK}" + CONTINUATION[:5]}
    assert finishes == {0: "length", 1: "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 14


def test_chat_stream_format(client):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, "stream": True,
            "stop": ["world"], "logprobs": True, "top_logprobs": 1}
    chunks = sse(client.post("/v1/chat/completions", json=body))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello, "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    tokens = [t["token"] for c in chunks[1:] for t in c["choices"][0]["logprobs"]["content"]]
    assert "".join(tokens) == "Hello, "


@pytest.fixture
def openai_client(client) -> OpenAI:
    """The official client, talking to the application through the test client's transport."""
    return OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused", http_client=client, max_retries=0)


def test_the_openai_client_streams_chat_and_completions(openai_client):
    parts = [c.choices[0].delta.content for c in openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=12, stream=True) if c.choices]
    assert "".join(p for p in parts if p) == CONTINUATION[:12] and len(parts) > 2
    stream = openai_client.completions.create(model=MODEL, prompt="Hi", max_tokens=6, stream=True,
                                              stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == CONTINUATION[:6]
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == 2
    choice = openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                   extra_body={"structured_outputs": {"choice": ["yy", "x"]}})
    assert choice.choices[0].message.content == "x"


def test_the_openai_client_sees_limits_as_bad_requests(openai_client):
    import openai

    with pytest.raises(openai.BadRequestError, match="max_new_tokens=512"):
        openai_client.completions.create(model=MODEL, prompt="Hi", max_tokens=100_000, stream=True)
    with pytest.raises(openai.NotFoundError, match="not found"):
        openai_client.completions.create(model="other", prompt="Hi")


def test_tokenising_and_chat_rendering_run_off_the_event_loop(client, fake_engine, monkeypatch):
    import asyncio

    calls = []

    def off_loop(name, method):
        def call(*args):
            try:
                asyncio.get_running_loop()
                calls.append((name, "event loop"))
            except RuntimeError:  # no loop runs on this thread: a worker
                calls.append((name, "worker"))
            return method(*args)

        return call

    monkeypatch.setattr(fake_engine, "encode", off_loop("encode", fake_engine.encode))
    monkeypatch.setattr(fake_engine, "render_chat", off_loop("render_chat", fake_engine.render_chat))
    choice = {"structured_outputs": {"choice": ["x", "yy"]}}
    assert client.post("/v1/completions", json={"model": MODEL, "prompt": ["a", "b"], "max_tokens": 2}).status_code == 200
    assert client.post("/v1/completions", json={"model": MODEL, "prompt": "a", **choice}).status_code == 200
    assert client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                                     "max_tokens": 2, "stream": True, **choice}).status_code == 200
    assert [name for name, _ in calls].count("render_chat") == 1 and len(calls) == 2 + 3 + 4  # prompts, choices, chat
    assert {where for _, where in calls} == {"worker"}


def test_non_finite_logprobs_are_minus_9999_or_null_never_a_made_up_number(client, monkeypatch):
    import math

    import fake_engine

    special = {ord("i"): -math.inf, ord("H"): math.nan}
    monkeypatch.setattr(fake_engine, "token_logprob", lambda token: special.get(token, -0.5))

    def strict(text: str) -> dict:
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    answer = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 0, "echo": True, "logprobs": 1})
    lp = strict(answer.text)["choices"][0]["logprobs"]
    assert lp["tokens"] == ["H", "i"] and lp["token_logprobs"] == [None, -9999.0] and lp["top_logprobs"][1] == {"i": -9999.0}
    chat = client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                     "max_tokens": 1, "logprobs": True, "top_logprobs": 1})
    token = strict(chat.text)["choices"][0]["logprobs"]["content"][0]
    assert (token["token"], token["logprob"], token["top_logprobs"][0]["logprob"]) == ("H", None, None)

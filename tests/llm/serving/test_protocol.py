"""The serve request models: arbitrary bodies parse or give one clear 400; strict types; lone surrogates refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serve_strategies import JSON, shaped

from flexrl.llm.serving.protocol import (
    ChatCompletionRequest, CompletionRequest, ErrorResponse, RequestError, parse_request,
)

BASES = {CompletionRequest: {"model": "m", "prompt": "Hi"},
         ChatCompletionRequest: {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}}


def check(body: bytes, model) -> None:
    """Either a model, or a RequestError that becomes a one-line 400 OpenAI error body."""
    try:
        request = parse_request(body, model)
    except RequestError as err:
        assert err.status == 400 and str(err) and "\n" not in str(err)
        error = ErrorResponse.of(err.status, str(err), err.param).model_dump()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == 400
        json.dumps(error, ensure_ascii=False).encode()  # the message itself is valid Unicode
        return
    assert isinstance(request, model)
    for text in [request.model, *getattr(request, "prompt", []), *request.stops]:
        text.encode("utf-8")  # every accepted string is valid Unicode


@settings(max_examples=150, deadline=None)
@given(body=JSON, model=st.sampled_from(list(BASES)))
def test_arbitrary_json_parses_or_is_refused_in_one_line(body, model):
    check(json.dumps(body).encode(), model)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), model=st.sampled_from(list(BASES)))
def test_request_shaped_bodies_parse_or_are_refused_in_one_line(data, model):
    check(json.dumps(data.draw(shaped(model, BASES[model]))).encode(), model)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_are_refused_in_one_line(body):
    check(body, CompletionRequest)


@pytest.mark.parametrize("raw", [b'{"model": "m", "prompt": "\\ud800abc"}', b'{"model": "m", "prompt": ["ok", "\\udfff"]}',
                                 b'{"model": "\\udc00\\ud800", "prompt": "x"}'])
def test_lone_surrogates_are_refused(raw):
    with pytest.raises(RequestError, match="lone surrogate") as err:
        parse_request(raw, CompletionRequest)
    assert err.value.status == 400


def test_lone_surrogates_are_refused_when_built_in_python():
    with pytest.raises(ValueError, match="lone surrogate"):
        CompletionRequest.model_validate({"model": "m", "prompt": "\ud800abc"})


# Every field with a value of the wrong type, and what the error must name.
WRONG_TYPES = [
    ("model", 3), ("prompt", [1, 2]), ("prompt", {"text": "x"}), ("max_tokens", "ten"), ("max_tokens", 1.5),
    ("max_tokens", True), ("echo", 1), ("echo", "yes"), ("logprobs", 2.0), ("logprobs", True), ("stop", 7),
    ("stop", [1]), ("n", "1"), ("stream", "true"), ("stream_options", True), ("stream_options", {"include_usage": 1}),
    ("structured_outputs", ["a"]), ("structured_outputs", {"choice": "a"}), ("temperature", "hot"),
    ("top_p", [0.5]), ("seed", 1.5), ("user", 5), ("presence_penalty", "0"), ("frequency_penalty", "x"),
]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_every_completion_field_refuses_a_wrong_type(field, value):
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps({"model": "m", "prompt": "Hi", field: value}).encode(), CompletionRequest)
    assert err.value.status == 400 and err.value.param.split(".")[0] == field and f"'{field}" in str(err.value)


CHAT_WRONG_TYPES = [
    ("messages", "hi"), ("messages", [{"role": "robot", "content": "hi"}]), ("messages", [{"role": "user", "content": ["hi"]}]),
    ("messages", [{"role": "user", "content": 3}]), ("messages", [{"role": "user"}]), ("max_completion_tokens", "5"),
    ("logprobs", 1), ("top_logprobs", "2"), ("max_tokens", -1),
]


@pytest.mark.parametrize(("field", "value"), CHAT_WRONG_TYPES)
def test_every_chat_field_refuses_a_wrong_type(field, value):
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], field: value}
    with pytest.raises(RequestError) as err:
        parse_request(json.dumps(body).encode(), ChatCompletionRequest)
    assert err.value.param.split(".")[0] == field


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "m", "prompt": "Hi", "n": 3}, "'n': Input should be less than or equal to 1"),
    ({"model": "m", "prompt": "Hi", "n": 10**30}, "'n'"),
    ({"model": "m", "prompt": "Hi", "max_tokens": -1}, "'max_tokens'"),
    ({"model": "m", "prompt": "Hi", "logprobs": 6}, "'logprobs': Input should be less than or equal to 5"),
    ({"model": "m", "prompt": "Hi", "best_of": 2}, "unknown field 'best_of'; allowed: model"),
    ({"model": "m", "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, "'stop'"),
    ({"model": "m", "prompt": "Hi", "stop": [""]}, "'stop.0'"),
    ({"model": "m", "prompt": []}, "non-empty list of strings"),
    ({"model": "m", "prompt": "Hi", "structured_outputs": {"regex": "a+"}}, "unknown field 'structured_outputs.regex'"),
    ({"model": "m", "prompt": "Hi", "structured_outputs": {"choice": []}}, "'structured_outputs.choice'"),
    ({"model": "m", "prompt": "Hi", "temperature": float("nan")}, "'temperature': Input should be a finite number"),
    ({"prompt": "Hi"}, "'model' is required"),
    ([1, 2], "the request body must be a JSON object"),
])
def test_messages_name_the_field_and_what_is_allowed(body, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        parse_request(json.dumps(body).encode(), CompletionRequest)


def test_valid_requests_parse_to_their_defaults():
    request = parse_request(b'{"model": "m", "prompt": "Hi", "stop": "\\n", "temperature": 0.7}', CompletionRequest)
    assert request.prompt == ["Hi"] and request.stops == ["\n"] and request.max_tokens is None and request.n == 1
    chat = parse_request(json.dumps({"model": "m", "max_tokens": 3, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}).encode(),
        ChatCompletionRequest)
    assert chat.messages[0].content == "ab" and chat.token_limit == 3 and chat.stops == []


def test_every_public_model_says_what_it_is():
    from pydantic import BaseModel

    from flexrl.llm.serving import protocol

    models = [c for name, c in vars(protocol).items()
              if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == protocol.__name__ and not name.startswith("_")]
    assert len(models) > 15
    undocumented = [c.__name__ for c in models if not (c.__dict__.get("__doc__") or "").strip()]
    assert undocumented == []

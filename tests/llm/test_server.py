"""`flexrl serve` as a real process on 127.0.0.1: the OpenAI subset, micro-batching, bad input, the API key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import httpx
import pytest
import torch

from flexrl.llm.server import ServeConfig, is_loopback


@pytest.fixture(scope="module")
def client(server, api_key):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model_id(client) -> str:
    return client.get("/v1/models").json()["data"][0]["id"]


def test_health_and_models(client, local_backend):
    assert client.get("/health").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [local_backend.name]


def test_every_request_needs_the_key(server, model_id):
    body = {"model": model_id, "prompt": "Hi", "max_tokens": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key-123"}):
        for method, path in (("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/completions")):
            answer = httpx.request(method, server.url + path, headers=headers, json=body, timeout=30)
            assert answer.status_code == 401, (headers, path)
            assert "API key" in answer.json()["error"]["message"]


def test_echo_logprobs_match_a_plain_forward_pass(client, model_id, local_backend):
    prompt, option = "The ball rolls towards the", " red pad"
    answer = client.post("/v1/completions", json={"model": model_id, "prompt": [prompt + option], "max_tokens": 0,
                                                  "echo": True, "logprobs": 2}).json()
    (choice,) = answer["choices"]
    lp = choice["logprobs"]
    ids = local_backend._encode(prompt + option)
    with torch.inference_mode():
        ref = torch.log_softmax(local_backend._model(torch.tensor([ids])).logits[0].float(), dim=-1)
    assert choice["text"] == prompt + option and "".join(lp["tokens"]) == prompt + option
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:] == pytest.approx([ref[j - 1, ids[j]].item() for j in range(1, len(ids))], abs=1e-3)
    assert (prompt + option)[lp["text_offset"][-2]:] == option  # offsets locate the option's tokens
    assert all(len(top) == 2 and max(top.values()) >= v - 1e-5 for top, v in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:]))
    assert answer["usage"]["prompt_tokens"] == len(ids)


def test_generation_and_chat_match_the_local_model(client, model_id, local_backend):
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a colour."}]
    expected = local_backend.generate(local_backend.chat_prompt("You are brief.", "Name a colour."), 8)
    chat = client.post("/v1/chat/completions", json={"model": model_id, "messages": messages, "max_tokens": 8,
                                                     "logprobs": True, "top_logprobs": 1}).json()
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": expected}
    assert "".join(t["token"] for t in chat["choices"][0]["logprobs"]["content"]) == expected
    prompt = local_backend.chat_prompt("You are brief.", "Name a colour.")
    text = client.post("/v1/completions", json={"model": model_id, "prompt": prompt, "max_tokens": 8}).json()
    assert text["choices"][0]["text"] == expected and text["usage"]["completion_tokens"] <= 8
    choice = client.post("/v1/chat/completions", json={"model": model_id, "messages": messages,
                                                       "structured_outputs": {"choice": ["red", "blue", "seven"]}}).json()
    assert choice["choices"][0]["message"]["content"] in ("red", "blue", "seven")


def test_concurrent_requests_share_passes(client, model_id, planner_requests):
    requests = planner_requests(range(50, 58))
    bodies = [{"model": model_id, "prompt": [r.prompt + o for o in r.options], "max_tokens": 0, "echo": True, "logprobs": 0}
              for r in requests]
    before = client.get("/health").json()
    answers = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(i):
        barrier.wait()
        answers[i] = client.post("/v1/completions", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = client.get("/health").json()
    assert all(a.status_code == 200 for a in answers)
    assert after["requests"] - before["requests"] == len(bodies)
    assert after["batches"] - before["batches"] < len(bodies)  # some requests shared a pass
    # Batched answers equal the same request alone.
    alone = client.post("/v1/completions", json=bodies[3]).json()
    for a, b in zip(answers[3].json()["choices"], alone["choices"]):
        assert a["logprobs"]["token_logprobs"][1:] == pytest.approx(b["logprobs"]["token_logprobs"][1:], abs=1e-3)


BAD_BODIES = [
    (b'{"model": ', 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"\xff\xfe", 400, "malformed JSON"),
    ({"model": None, "prompt": "Hi"}, 400, "'model' is required"),
    ({"model": "gpt-4", "prompt": "Hi"}, 404, "not found"),
    ({"prompt": [1, 2, 3]}, 400, "'prompt' must be a string"),
    ({"prompt": ""}, 400, "must not be empty"),
    ({"prompt": "hello " * 5000}, 400, "at most 4096"),
    ({"prompt": "Hi", "max_tokens": -1}, 400, "'max_tokens' must be between"),
    ({"prompt": "Hi", "max_tokens": 10**12}, 400, "'max_tokens' must be between"),
    ({"prompt": "Hi", "max_tokens": "ten"}, 400, "'max_tokens' must be of type int"),
    ({"prompt": "Hi", "max_tokens": 1.5}, 400, "'max_tokens' must be of type int"),
    ({"prompt": "Hi", "logprobs": 99, "echo": True}, 400, "'logprobs' must be between"),
    ({"prompt": "Hi", "n": 3}, 400, "'n' must be between"),
    ({"prompt": "Hi", "stream": True}, 400, "streaming"),
    ({"prompt": ["Hi"] * 65}, 400, "at most 64"),
    ({"prompt": "Hi", "structured_outputs": {"regex": "a+"}}, 400, "choice"),
    ({"prompt": "Hi", "structured_outputs": {"choice": []}}, 400, "choice"),
    ({"prompt": "Hi", "stop": [""]}, 400, "stop"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_bad_completion_requests_get_4xx_and_the_server_keeps_serving(client, model_id, body, status, message):
    if isinstance(body, dict):
        body = json.dumps({"model": model_id, **body}).encode()
    answer = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert client.post("/v1/completions", json={"model": model_id, "prompt": "Hi", "max_tokens": 1}).status_code == 200


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": []}, "'messages' must be a list"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "content"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 100000}, "between"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 50}, "between"),
])
def test_bad_chat_requests_get_400(client, model_id, body, message):
    answer = client.post("/v1/chat/completions", json={"model": model_id, **body})
    assert answer.status_code == 400 and message in answer.json()["error"]["message"]


def test_oversized_bodies_and_unknown_paths(client, model_id):
    huge = json.dumps({"model": model_id, "prompt": "x" * 1_100_000})
    answer = client.post("/v1/completions", content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/completions").status_code == 405


def test_non_loopback_bind_requires_an_api_key():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        ServeConfig(host=host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ValueError, match="API key"):
            ServeConfig(host=host)
        ServeConfig(host=host, api_key="k")
    with pytest.raises(ValueError, match="empty"):
        ServeConfig(api_key=" ")
    # The command refuses before loading anything.
    env = {k: v for k, v in os.environ.items() if k != "FLEXRL_SERVE_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "flexrl.llm.server", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "API key" in done.stderr

"""`flexrl serve` as a real process on 127.0.0.1: the OpenAI subset, micro-batching, bad input, the API key,
streaming through the official `openai` client, and small requests beside a big one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from flexrl.llm.serving.config import ServeConfig, is_loopback


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


def test_web_pages_are_kept_out(server, api_key, model_id):
    """On 127.0.0.1 with a key: a rebound Host is refused even with the key; a foreign Origin needs the key."""
    body, key = {"model": model_id, "prompt": "Hi", "max_tokens": 1}, {"Authorization": f"Bearer {api_key}"}
    rebound = httpx.post(server.url + "/v1/completions", json=body, headers={**key, "Host": "evil.example:8000"}, timeout=60)
    assert rebound.status_code == 403 and rebound.json()["error"]["message"].startswith("Host 'evil.example:8000' is refused")
    page = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    assert httpx.post(server.url + "/v1/completions", json=body, headers=page, timeout=60).status_code == 401
    assert httpx.post(server.url + "/v1/completions", json=body, headers={**page, **key}, timeout=60).status_code == 200


def test_echo_logprobs_match_a_plain_forward_pass(client, model_id, local_backend):
    prompt, option = "The ball rolls towards the", " red pad"
    answer = client.post("/v1/completions", json={"model": model_id, "prompt": [prompt + option], "max_tokens": 0,
                                                  "echo": True, "logprobs": 2}).json()
    (choice,) = answer["choices"]
    lp = choice["logprobs"]
    ids = local_backend.encode(prompt + option)
    with torch.inference_mode():
        ref = torch.log_softmax(local_backend.model(torch.tensor([ids])).logits[0].float(), dim=-1)
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
    ({"model": None, "prompt": "Hi"}, 400, "'model': Input should be a valid string"),
    ({"model": "gpt-4", "prompt": "Hi"}, 404, "not found"),
    ({"prompt": [1, 2, 3]}, 400, "token-id prompts are not supported"),
    ({"prompt": ""}, 400, "must not be empty"),
    ({"prompt": "\ud800abc"}, 400, "lone surrogate"),
    ({"prompt": "Hi", "bogus": 1}, 400, "unknown field 'bogus'"),
    ({"prompt": "hello " * 5000}, 400, "max_prompt_tokens=4096 (raise it with flexrl serve --max-prompt-tokens)"),
    ({"prompt": ["x " * 1000] * 20, "max_tokens": 1}, 400, "max_request_tokens=16384"),
    ({"prompt": "Hi", "max_tokens": -1}, 400, "'max_tokens': Input should be greater than or equal to 0"),
    ({"prompt": "Hi", "max_tokens": 10**12}, 400, "max_new_tokens=512"),
    ({"prompt": "Hi", "max_tokens": "ten"}, 400, "'max_tokens': Input should be a valid integer"),
    ({"prompt": "Hi", "max_tokens": 1.5}, 400, "'max_tokens': Input should be a valid integer"),
    ({"prompt": "Hi", "logprobs": 99, "echo": True}, 400, "'logprobs': Input should be less than or equal to 5"),
    ({"prompt": "Hi", "n": 3}, 400, "'n': Input should be less than or equal to 1"),
    ({"prompt": ["Hi"] * 65}, 400, "max_prompts=64"),
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
    error = answer.json()["error"]
    assert message in error["message"] and "\n" not in error["message"] and error["code"] == status
    assert client.post("/v1/completions", json={"model": model_id, "prompt": "Hi", "max_tokens": 1}).status_code == 200


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": []}, "'messages': List should have at least 1 item"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "'messages.0.role'"),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "'messages.0.content'"),
    ({"messages": [{"role": "user", "content": "\udfff"}]}, "lone surrogate"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 100000}, "max_new_tokens=512"),
    ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 50}, "'top_logprobs'"),
])
def test_bad_chat_requests_get_400(client, model_id, body, message):
    # json.dumps escapes a lone surrogate as \\udfff (httpx's json= cannot encode it at all).
    answer = client.post("/v1/chat/completions", content=json.dumps({"model": model_id, **body}).encode())
    assert answer.status_code == 400 and message in answer.json()["error"]["message"]


def test_oversized_bodies_and_unknown_paths(client, model_id):
    huge = json.dumps({"model": model_id, "prompt": "x" * 1_100_000})
    answer = client.post("/v1/completions", content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "max_request_bytes=1000000" in answer.json()["error"]["message"]
    assert client.get("/v1/nothing").status_code == 404 and "no route" in client.get("/v1/nothing").json()["error"]["message"]
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


@pytest.mark.slow
def test_the_openai_client_streams_what_it_gets_in_one_answer(server, api_key, model_id):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=api_key, timeout=300, max_retries=0)
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=24)
    chunks = list(client.chat.completions.create(model=model_id, messages=messages, max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}))
    parts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(parts) > 1 and "".join(parts) == whole.choices[0].message.content  # greedy: the same text, in pieces
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    prompt = "The robot walks to the red pad and"
    plain = client.completions.create(model=model_id, prompt=prompt, max_tokens=20, stop=["."])
    streamed = [c.choices[0].text for c in client.completions.create(model=model_id, prompt=prompt, max_tokens=20,
                                                                     stop=["."], stream=True)]
    assert "".join(streamed) == plain.choices[0].text and "." not in plain.choices[0].text
    echo = client.completions.create(model=model_id, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    assert "".join(echo.choices[0].logprobs.tokens) == prompt and echo.choices[0].logprobs.token_logprobs[0] is None


@pytest.mark.slow
def test_small_requests_finish_while_a_big_one_runs(start_server, api_key):
    # Slices of 64 tokens: the big echo (~500 prompt tokens) needs several micro-batches, small ones fit one.
    server = start_server("--port", "0", "--threads", "1", "--api-key", api_key, "--slice-tokens", "64")
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        big = {"model": model, "prompt": " ".join(f"Robot {i} walks to the red pad." for i in range(50)),
               "max_tokens": 0, "echo": True, "logprobs": 1}
        done: dict[str, float] = {}

        def send(name, body):
            answer = client.post("/v1/completions", json=body)
            assert answer.status_code == 200, answer.text
            done[name] = time.perf_counter()

        threads = [threading.Thread(target=send, args=("big", big))]
        threads[0].start()
        time.sleep(1.0)
        for i in range(4):
            small = {"model": model, "prompt": f"Hello {i}", "max_tokens": 2}
            threads.append(threading.Thread(target=send, args=(f"small{i}", small)))
            threads[-1].start()
        for t in threads:
            t.join()
    assert len(done) == 5
    assert max(v for k, v in done.items() if k != "big") < done["big"], done

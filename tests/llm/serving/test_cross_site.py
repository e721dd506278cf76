"""`flexrl serve` keeps web pages out: a foreign Origin without an API key, and on a loopback address a Host that
is not a loopback host (DNS rebinding), get 403 before any model work; local clients are served as before."""

from __future__ import annotations

import pytest
from fake_engine import MODEL
from test_router import BASES, assert_answer

EVIL_ORIGIN = {"Origin": "https://evil.example"}
REBOUND_HOST = {"Host": "evil.example:8000"}  # a page of evil.example whose name now resolves to 127.0.0.1
ROUTES = [("POST", "/v1/completions"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/health"),
          ("GET", "/nothing")]


def _send(client, method: str, path: str, headers: dict):
    body = BASES.get(path) if method == "POST" else None
    # what a page's fetch(url, {method: "POST", body}) sends: text/plain needs no CORS preflight
    return client.request(method, path, json=body, headers={"Content-Type": "text/plain;charset=UTF-8", **headers})


@pytest.mark.parametrize("headers, refused", [
    (EVIL_ORIGIN, "Origin 'https://evil.example' is refused"),
    ({"Origin": "null"}, "Origin 'null' is refused"),
    (REBOUND_HOST, "Host 'evil.example:8000' is refused"),
    ({**REBOUND_HOST, "Origin": "http://evil.example:8000"}, "Origin 'http://evil.example:8000' is refused"),
])
@pytest.mark.parametrize("method, path", ROUTES)
def test_web_pages_get_403_and_no_model_work(client, fake_engine, headers, refused, method, path):
    error = assert_answer(_send(client, method, path, headers), 403)["error"]
    assert error["message"].startswith(refused) and "allowed:" in error["message"]
    assert fake_engine.jobs == []


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://localhost:3000"}, {"Origin": "http://127.0.0.1:8000"},
                                     {"Origin": "http://[::1]:8000"}, {"Host": "localhost:8000"}, {"Host": "[::1]:8000"}])
def test_local_clients_and_pages_are_served(client, fake_engine, headers):
    answer = assert_answer(_send(client, "POST", "/v1/completions", headers), 200)
    assert answer["choices"][0]["text"] and len(fake_engine.jobs) == 1


def test_with_an_api_key_a_page_must_present_it_and_the_host_is_still_checked(make_client):
    keyed = make_client(api_key="k")  # on 127.0.0.1
    key = {"Authorization": "Bearer k"}
    assert_answer(_send(keyed, "POST", "/v1/completions", EVIL_ORIGIN), 401)
    assert_answer(_send(keyed, "POST", "/v1/completions", {**EVIL_ORIGIN, **key}), 200)  # it knows the key
    assert_answer(_send(keyed, "POST", "/v1/completions", {**REBOUND_HOST, **key}), 403)


def test_bound_elsewhere_any_host_is_served_and_foreign_origins_need_the_key(make_client):
    public = make_client(host="0.0.0.0", api_key="k")
    key = {"Authorization": "Bearer k"}
    assert_answer(_send(public, "POST", "/v1/completions", {"Host": "llm.example:8000", **key}), 200)
    assert_answer(_send(public, "GET", "/health", {"Host": "llm.example:8000", **EVIL_ORIGIN}), 401)
    assert_answer(_send(public, "GET", "/health", {"Host": "llm.example:8000", **EVIL_ORIGIN, **key}), 200)


def test_the_openai_client_sends_no_origin_and_a_loopback_host(client):
    from openai import OpenAI

    seen = []
    client.event_hooks["request"].append(lambda request: seen.append(dict(request.headers)))
    openai_client = OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused", http_client=client, max_retries=0)
    answer = openai_client.completions.create(model=MODEL, prompt="Hi", max_tokens=3)
    assert answer.choices[0].text and "origin" not in seen[0] and seen[0]["host"] == "127.0.0.1:8000"

"""POST /instruction: every request gets a JSON answer (2xx/4xx), never a traceback; refusals reach the run as notes.

The answers are tested as a function (:func:`answer_post`, with property tests over arbitrary JSON and bytes)
and through the real server (FastAPI on uvicorn) on 127.0.0.1 with raw sockets, so malformed headers really go over the wire.
"""

import http.client
import io
import json
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexrl.agent.instruction_http import InstructionServer, answer_post
from flexrl.local_http import check_port
from flexrl.agent.instructions import InstructionChannel
from flexrl.agent.intents import IntentChecker, arena_world
from flexrl.agent.sanitise import MAX_CHARS


@pytest.fixture(scope="module")
def intents():
    return IntentChecker(arena_world())


def _post(body: bytes, content_type="application/json", length: str | None = "auto", intents=None):
    length = str(len(body)) if length == "auto" else length
    return answer_post(content_type, length, io.BytesIO(body).read, intents)


def _json(value) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("body, content_type, length, status, error", [
    (b'{"text": "hi", "intent": {"a": 1}}', "application/json", "auto", 400, "intent: Input should be a valid string"),
    (b'{"text": "hi", "intent": "fly(moon)"}', "application/json", "auto", 400, "intent 'fly(moon)': unknown skill 'fly'; allowed: move("),
    (b'{"text": "hi", "intent": "go_to(purple_pad)"}', "application/json", "auto", 400, "go_to does not take (purple_pad)"),
    (b'{"text": "hi", "intent": ""}', "application/json", "auto", 400, "intent: String should have at least 1 character"),
    (b'{"text": 5}', "application/json", "auto", 400, "text: Input should be a valid string"),
    (b'{"intent": "stop"}', "application/json", "auto", 400, "text: Field required"),
    (b'{"text": "hi", "priority": 1}', "application/json", "auto", 400, "priority: Extra inputs are not permitted"),
    (b'[1, 2]', "application/json", "auto", 400, "body: Input should be an object"),
    (b'{nope', "application/json", "auto", 400, "Invalid JSON"),
    (b'{"text": "   "}', "application/json", "auto", 400, "http instruction: dropped an empty instruction"),
    (b"Follow", "application/x-www-form-urlencoded", "auto", 415, "Content-Type 'application/x-www-form-urlencoded'; allowed: text/plain, application/json"),
    (b"Follow", None, "auto", 415, "Content-Type None; allowed"),
    (b"Follow", "text/plain", None, 411, "Content-Length is required"),
    (b"Follow", "text/plain", "-1", 400, "Content-Length '-1'; allowed: 0 to 64000 bytes"),
    (b"Follow", "text/plain", "abc", 400, "Content-Length 'abc'"),
    (b"Follow", "text/plain", "6,6", 400, "Content-Length '6,6'"),
    (b"Follow", "text/plain", "150000000", 413, "body of 150000000 bytes; allowed: at most 64000"),
    (b"Follow", "text/plain", "60", 400, "body ended after 6 of the 60 bytes"),
    (b"\xff\xfe\x00\x81" * 50, "text/plain", "auto", 400, "dropped 200 bytes of binary input"),
])
def test_bad_requests_are_refused_with_one_line_and_a_note(intents, body, content_type, length, status, error):
    reply = _post(body, content_type, length, intents)
    assert reply.status == status and reply.body["accepted"] is False
    assert error in reply.body["error"] and "\n" not in reply.body["error"]
    assert reply.arrival.instruction is None and reply.arrival.note  # the run hears of it


@pytest.mark.parametrize("body, content_type, text, intent", [
    (b"Follow the ball", "text/plain", "Follow the ball", None),
    (b"Follow the ball", "Text/Plain; charset=utf-8", "Follow the ball", None),
    (_json({"text": "Avoid the ball!", "intent": "avoid(ball)"}), "application/json", "Avoid the ball!", "avoid(ball)"),
    (_json({"text": "Go", "intent": None}), "application/json", "Go", None),
    (_json({"text": "a; b", "intent": "go_to(red_pad); go_to(blue_pad)"}), "application/json", "a; b", "go_to(red_pad); go_to(blue_pad)"),
])
def test_good_requests_are_accepted(intents, body, content_type, text, intent):
    reply = _post(body, content_type, intents=intents)
    assert reply.status == 202 and reply.body == {"accepted": True, "text": text, "intent": intent, "note": None}
    assert (reply.arrival.instruction.text, reply.arrival.instruction.intent, reply.arrival.instruction.source) == (text, intent, "http")


def test_long_text_is_accepted_truncated_with_a_note(intents):
    reply = _post(_json({"text": "x" * 10_000}), intents=intents)
    assert reply.status == 202 and reply.body["text"] == "x" * MAX_CHARS and "truncated" in reply.body["note"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
REQUESTS = st.one_of(
    st.fixed_dictionaries({"text": JSON_VALUES}, optional={"intent": JSON_VALUES | st.sampled_from(["stop", "fly(moon)", "go_to(ball)"])}),
    JSON_VALUES,
)


def _check_reply(reply) -> None:
    assert 200 <= reply.status < 300 or 400 <= reply.status < 500
    json.dumps(reply.body)
    if reply.status >= 400:
        assert isinstance(reply.body["error"], str) and "\n" not in reply.body["error"]
    else:
        ins = reply.arrival.instruction
        assert reply.body["accepted"] is True and 0 < len(ins.text) <= MAX_CHARS


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=REQUESTS)
def test_any_json_value_gets_a_json_answer(intents, value):
    _check_reply(_post(_json(value), intents=intents))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2_000), content_type=st.sampled_from(["text/plain", "application/json", "image/png", "", None]),
       length=st.one_of(st.just("auto"), st.none(), st.text(max_size=12)))
def test_any_bytes_and_headers_get_a_json_answer(intents, body, content_type, length):
    _check_reply(_post(body, content_type, length, intents))


# ------------------------------------------------------------------------------------------ the real server
def _raw(port: int, data: bytes) -> tuple[int, dict]:
    """Send raw bytes, read the whole answer; (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        # One answer, read to its Content-Length: the server keeps an HTTP/1.1 connection open after it.
        answer = http.client.HTTPResponse(s)
        answer.begin()
        return answer.status, json.loads(answer.read())


def _request(method: str, path: str, headers: dict, body: bytes = b"") -> bytes:
    headers = {"Host": "127.0.0.1", **headers}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def channel(intents):
    ch = InstructionChannel(http_port=0, intents=intents)
    yield ch
    ch.close()


def _post_request(content_type: str, body: bytes, length: object = None, path: str = "/instruction") -> bytes:
    return _request("POST", path, {"Content-Type": content_type, "Content-Length": len(body) if length is None else length}, body)


HOSTILE = [
    (_post_request("application/json", b'{"text": "hi", "intent": {"a": 1}}'), 400),
    (_post_request("application/json", b'{"text": "hi", "intent": "go_to(purple_pad)"}'), 400),
    (_post_request("text/plain", b"x" * 100, length=-1), 400),
    (_post_request("text/plain", b"x", length="abc"), 400),
    (_post_request("text/plain", b"x" * 1000, length=150_000_000), 413),
    (_request("POST", "/instruction", {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}, b"3\r\nabc\r\n0\r\n\r\n"), 411),
    (_post_request("image/png", b"\x89PNG"), 415),
    (_post_request("text/plain", b"hi", path="/elsewhere"), 404),
    (_request("PUT", "/instruction", {}), 405),
    (_request("GET", "/" + "a" * 70_000, {}), 404),
]


def test_hostile_requests_get_json_answers_and_leave_notes(channel):
    port = channel.http_address[1]
    for data, status in HOSTILE:
        got, body = _raw(port, data)
        assert got == status, (data[:80], body)
        assert isinstance(body["error"], str)
    assert _raw(port, b"GARBAGE\r\n\r\n")[1]["error"].startswith("bad HTTP request: illegal request line")
    good = _post_request("application/json", b'{"text":"Avoid the ball!","intent":"avoid(ball)"}')
    assert _raw(port, good) == (202, {"accepted": True, "text": "Avoid the ball!", "intent": "avoid(ball)", "note": None})
    assert _raw(port, _request("GET", "/health", {})) == (200, {"status": "ok"})
    arrivals = channel.poll(0)
    notes = [a.note for a in arrivals if a.instruction is None]
    # Not for 404/405, nor for Content-Length -1 and abc: the HTTP parser refuses those before the app sees them.
    assert len(notes) == 5 and all(n.startswith("http instruction refused (4") for n in notes)
    assert [(a.instruction.text, a.instruction.intent) for a in arrivals if a.instruction] == [("Avoid the ball!", "avoid(ball)")]


def _text_post(text: bytes, **headers) -> bytes:
    """What a web page's ``fetch(url, {method: "POST", body: text})`` sends: no CORS preflight for text/plain."""
    return _request("POST", "/instruction", {"Content-Type": "text/plain;charset=UTF-8", "Content-Length": len(text), **headers}, text)


@pytest.mark.parametrize("headers, refused", [
    ({"Origin": "https://evil.example"}, "Origin 'https://evil.example' is refused"),
    ({"Origin": "null"}, "Origin 'null' is refused"),  # a sandboxed frame or a file:// page
    ({"Origin": "http://localhost.evil.example"}, "Origin 'http://localhost.evil.example' is refused"),
    ({"Host": "evil.example:8000"}, "Host 'evil.example:8000' is refused"),  # DNS rebinding: evil.example -> 127.0.0.1
    ({"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}, "Origin 'http://evil.example:8000' is refused"),
])
def test_requests_from_web_pages_are_refused_and_never_reach_the_run(channel, headers, refused):
    port = channel.http_address[1]
    status, body = _raw(port, _text_post(b"Follow the ball", **headers))
    assert status == 403 and body["error"].startswith(refused) and "\n" not in body["error"]
    status, body = _raw(port, _request("GET", "/health", headers))
    assert status == 403 and body["error"].startswith(refused)
    assert channel.poll(0) == []  # neither the instruction nor a note: a page cannot fill the event log either
    assert _raw(port, _text_post(b"Stop")) == (202, {"accepted": True, "text": "Stop", "intent": None, "note": None})
    assert [a.instruction.text for a in channel.poll(0)] == ["Stop"]


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://localhost:3000"}, {"Origin": "http://127.0.0.1:8080"},
                                     {"Origin": "http://[::1]:8080"}, {"Host": "localhost:8000"}, {"Host": "[::1]"}])
def test_loopback_origins_and_hosts_are_served(channel, headers):
    assert _raw(channel.http_address[1], _text_post(b"Follow the ball", **headers))[0] == 202
    assert [a.instruction.text for a in channel.poll(0)] == ["Follow the ball"]


def test_a_body_that_stops_short_is_answered_408_after_the_read_timeout(intents, monkeypatch):
    from flexrl.agent import instruction_http

    monkeypatch.setattr(instruction_http, "READ_TIMEOUT_S", 0.3)
    ch = InstructionChannel(http_port=0, intents=intents)
    try:
        start = time.perf_counter()
        status, body = _raw(ch.http_address[1], _post_request("text/plain", b"abc", length=10))
        assert status == 408 and "did not arrive within 0.3 s" in body["error"]
        assert time.perf_counter() - start < 5
        assert "refused (408)" in ch.poll(0)[0].note
    finally:
        ch.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=REQUESTS)
def test_the_real_server_answers_any_json_value(channel, value):
    body = _json(value)
    status, reply = _raw(channel.http_address[1], _request(
        "POST", "/instruction", {"Content-Type": "application/json", "Content-Length": len(body)}, body))
    assert status == 202 or 400 <= status < 500
    assert reply["accepted"] is (status == 202)


@pytest.mark.parametrize("port", [-1, 70_000, 1.5, "80", True])
def test_ports_outside_the_range_are_one_line(port):
    with pytest.raises(ValueError, match=r"^http_port=.*; allowed: 0 to 65535 \(0: any free port\), or null \(no server\)$"):
        check_port(port, "http_port", optional=True)


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=rf"^http_port={port}: address already in use; choose another port or 0$"):
            InstructionServer(port, lambda arrival: None)


def test_port_zero_picks_a_free_port_and_close_frees_it():
    server = InstructionServer(0, lambda arrival: None)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0 and server.url == f"http://127.0.0.1:{port}/instruction"
    server.close()
    time.sleep(0.05)
    InstructionServer(port, lambda arrival: None).close()  # free again

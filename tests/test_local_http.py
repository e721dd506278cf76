"""flexrl.local_http: the port range, loopback addresses, and the Origin/Host check both HTTP servers use."""

from __future__ import annotations

import pytest

from flexrl.local_http import check_port, cross_site_refusal, is_loopback, is_loopback_host, is_loopback_origin


@pytest.mark.parametrize("port", [0, 1, 8000, 65535])
def test_ports_in_range_pass(port):
    check_port(port)


@pytest.mark.parametrize("port", [-1, 65536, 1.5, "80", True, None])
def test_ports_outside_the_range_are_one_line_naming_the_setting(port):
    with pytest.raises(ValueError, match=r"^my_port=.*; allowed: 0 to 65535 \(0: any free port\)$"):
        check_port(port, "my_port")


def test_none_is_allowed_only_when_optional():
    check_port(None, "http_port", optional=True)
    with pytest.raises(ValueError, match=r"^http_port=-1; allowed: 0 to 65535 \(0: any free port\), or null \(no server\)$"):
        check_port(-1, "http_port", optional=True)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("LocalHost", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False), ("localhost.evil.example", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost", "localhost:1", "LOCALHOST:8000",
                                  "[::1]", "[::1]:8000", "[0:0:0:0:0:0:0:1]:80"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.", "::1",
                                  "[::1", "[127.0.0.1]", "127.0.0.1:80:80", "127.0.0.1:port", "127.0.0.1@evil.example",
                                  "localhost evil.example", "", "0.0.0.0:8000", "[::]:8000", "192.168.1.5"])
def test_other_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize("origin", ["http://127.0.0.1", "http://127.0.0.1:8000", "http://localhost:3000",
                                    "http://[::1]:8000", "https://localhost", "HTTP://LOCALHOST:5173"])
def test_loopback_origins(origin):
    assert is_loopback_origin(origin)


@pytest.mark.parametrize("origin", ["https://evil.example", "http://evil.example:8000", "null", "", "127.0.0.1",
                                    "file://", "http://127.0.0.1.evil.example", "http://localhost.evil.example",
                                    "ftp://localhost", "http://localhost/path", "http://user@localhost"])
def test_other_origins(origin):
    assert not is_loopback_origin(origin)


def test_what_curl_and_local_pages_send_is_served():
    assert cross_site_refusal([], ["127.0.0.1:8000"]) is None  # curl, httpx, the openai client
    assert cross_site_refusal([], []) is None  # HTTP/1.0 without Host: no browser sends that
    assert cross_site_refusal(["http://localhost:3000"], ["localhost:8000"]) is None


@pytest.mark.parametrize("origins, hosts, check_origin, check_host, refused", [
    (["https://evil.example"], ["127.0.0.1:8000"], True, True, "Origin 'https://evil.example' is refused"),
    (["null"], ["127.0.0.1:8000"], True, True, "Origin 'null' is refused"),
    (["http://localhost", "https://evil.example"], ["127.0.0.1"], True, True, "Origin ['http://localhost', 'https://evil.example']"),
    ([], ["evil.example:8000"], True, True, "Host 'evil.example:8000' is refused"),
    (["http://evil.example:8000"], ["evil.example:8000"], False, True, "Host 'evil.example:8000' is refused"),
    ([], ["127.0.0.1", "evil.example"], True, True, "Host ['127.0.0.1', 'evil.example'] is refused"),
    (["https://evil.example"], ["127.0.0.1"], False, True, None),
    ([], ["evil.example:8000"], True, False, None),
])
def test_cross_site_refusal(origins, hosts, check_origin, check_host, refused):
    why = cross_site_refusal(origins, hosts, check_origin=check_origin, check_host=check_host)
    if refused is None:
        assert why is None
    else:
        assert why.startswith(refused) and "allowed:" in why and "\n" not in why


def test_a_hostile_header_is_shown_on_one_line_and_short():
    why = cross_site_refusal(["http://evil.example/\r\nX: " + "a" * 500], [])
    assert "\n" not in why and "\r" not in why and len(why) < 300

"""Local HTTP/1 endpoints, keep-alive, pipelining and abuse of the HTTP/1 path."""

import json
import random
import re
import threading
import time

import pytest

from conftest import (HOST, ConnectionClosed, ResponseReader, base_config, build_request, connect,
                      find_keys, parse_metrics, read_until_close, run, send_bytes)

SPEC_METRICS = [
    "sidemux_connections_accepted_total",
    "sidemux_connections_active",
    "sidemux_connections_rejected_total",
    "sidemux_http_requests_total",
    "sidemux_streams_active",
    "sidemux_upstream_streams_total",
    "sidemux_upstream_stream_duration_seconds",
    "sidemux_upstream_retries_total",
    "sidemux_upstream_connections_active",
    "sidemux_member_up",
    "sidemux_member_active_streams",
    "sidemux_config_reloads_total",
    "sidemux_config_generation",
    "sidemux_bytes_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
]


def content_type(resp):
    return (resp.header("content-type") or "").split(";")[0].strip().lower()


def assert_alive(sm):
    resp = sm.get("/livez")
    assert resp.status == 200 and resp.body.strip() == b"ok", resp


# ---------------------------------------------------------------- endpoints

def test_livez(sidemux):
    resp = sidemux.get("/livez")
    assert resp.status == 200
    assert resp.body in (b"ok", b"ok\n"), resp.body
    assert content_type(resp) == "text/plain"
    assert resp.version == "HTTP/1.1"


def test_health_etcd_shape_unhealthy(sidemux):
    resp = sidemux.get("/health")
    assert resp.status == 503
    assert content_type(resp) == "application/json"
    body = resp.json()
    assert set(body) == {"health", "reason"}, body
    assert body["health"] == "false"
    assert isinstance(body["reason"], str) and body["reason"], body


def test_readyz_not_ready_without_healthy_member(sidemux):
    resp = sidemux.get("/readyz")
    assert resp.status == 503
    assert resp.body.strip(), "503 /readyz must say why"


def test_version(sidemux, sidemux_bin):
    resp = sidemux.get("/version")
    assert resp.status == 200
    assert content_type(resp) == "application/json"
    body = resp.json()
    for key in ("sidemux", "libuv", "nghttp2", "llhttp", "openssl"):
        assert key in body, f"{key} missing from {body}"
        assert isinstance(body[key], str) and re.search(r"\d", body[key]), (key, body[key])
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["sidemux"]), body["sidemux"]
    cli = run([sidemux_bin, "--version"]).stdout.splitlines()[0]
    assert cli.split()[1] == body["sidemux"], (cli, body)


def test_metrics(sidemux):
    for _ in range(3):
        assert sidemux.get("/livez").status == 200
    resp = sidemux.get("/metrics")
    assert resp.status == 200
    ctype = (resp.header("content-type") or "").lower()
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    text = resp.body.decode()
    m = parse_metrics(text)  # raises on a malformed line
    for name in ("sidemux_connections_accepted_total", "sidemux_connections_active",
                 "sidemux_http_requests_total", "sidemux_streams_active", "sidemux_member_up",
                 "sidemux_config_generation", "sidemux_bytes_total", "process_resident_memory_bytes",
                 "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"):
        assert any(n == name for n, _ in m), f"no sample of {name} in /metrics"
    assert m.value("sidemux_http_requests_total", path="/livez", code="200") == 3
    # this scrape's connection plus the three /livez ones
    assert m.value("sidemux_connections_accepted_total", listener="client", protocol="http1", tls="false") == 4
    assert m.value("sidemux_connections_active", listener="client", protocol="http1", tls="false") >= 1
    assert m.value("sidemux_member_up", member="m1") == 0
    assert m.value("sidemux_config_generation") == 1
    assert m.value("sidemux_streams_active") == 0
    assert m.sum("sidemux_bytes_total", side="downstream", direction="in") > 0
    assert m.value("process_resident_memory_bytes") > 1 << 20
    assert m.value("process_open_fds") > 0
    now = time.time()
    assert now - 120 < m.value("process_start_time_seconds") <= now + 1
    assert m.value("process_cpu_seconds_total") >= 0


# Labelled by request path or stream outcome: like Prometheus client
# libraries, sidemux shows these once something was counted.
COUNTED_ON_USE = {"sidemux_http_requests_total", "sidemux_upstream_streams_total"}


def test_metrics_declares_every_spec_family(sidemux):
    """Every SPEC family whose labels are known at start (listeners, members,
    reasons) has a # TYPE line with zero series before any traffic."""
    m = sidemux.metrics()
    missing = [n for n in SPEC_METRICS if n not in m.types and n not in COUNTED_ON_USE]
    assert not missing, f"/metrics has no # TYPE for {missing}"
    for reason in ("limit", "classify_timeout", "bad_request", "tls_handshake"):
        assert m.value("sidemux_connections_rejected_total", listener="client", reason=reason) == 0
    assert "sidemux_http_requests_total" in sidemux.metrics().types  # the first scrape was counted
    assert m.types["sidemux_connections_accepted_total"] == "counter"
    assert m.types["sidemux_connections_active"] == "gauge"
    assert m.types["sidemux_upstream_stream_duration_seconds"] == "histogram"
    assert m.types["process_resident_memory_bytes"] == "gauge"


def test_debug_vars(sidemux):
    resp = sidemux.get("/debug/vars")
    assert resp.status == 200
    assert content_type(resp) == "application/json"
    body = resp.json()
    assert isinstance(body, dict)
    gen = find_keys(body, lambda k: "generation" in k.lower())
    assert any(v == 1 for _, v in gen), f"no config generation 1 in {body}"
    uptime = find_keys(body, lambda k: "uptime" in k.lower())
    assert any(isinstance(v, (int, float)) and v >= 0 for _, v in uptime), f"no numeric uptime in {body}"
    rss = find_keys(body, lambda k: "rss" in k.lower() or "resident" in k.lower())
    assert any(isinstance(v, (int, float)) and v > 1 << 20 for _, v in rss), f"no RSS in bytes in {body}"
    counters = find_keys(body, lambda k: k.lower() in ("counters", "metrics", "stats"))
    assert any(isinstance(v, (dict, list)) and v for _, v in counters), f"no counters in {body}"
    members = find_keys(body, lambda k: k.lower() == "members")
    assert members, f"no members in {body}"
    text = json.dumps(members[0][1])
    assert "m1" in text, f"member m1 missing: {text}"
    assert re.search(r'"(state|status|health|healthy|up)"', text), f"no member state: {text}"


@pytest.mark.parametrize("path,status", [("/livez", 200), ("/version", 200), ("/health", 503),
                                         ("/readyz", 503), ("/metrics", 200), ("/debug/vars", 200)])
def test_head_has_headers_without_body(sidemux, path, status):
    with connect(sidemux.port) as s:
        get = build_request(path)
        s.sendall(build_request(path, "HEAD") + get + build_request("/livez"))
        reader = ResponseReader(s)
        head = reader.read_response(head=True)
        got = reader.read_response()
        after = reader.read_response()
    assert head.status == status
    assert got.status == status
    assert content_type(head) == content_type(got)
    if path not in ("/metrics", "/debug/vars"):  # those bodies change between requests
        assert head.header("content-length") == str(len(got.body)), (head, got)
    # if HEAD had sent a body, the next responses would not parse or not line up
    assert after.status == 200 and after.body.strip() == b"ok", after


def test_unknown_path_404(sidemux):
    assert sidemux.get("/nope").status == 404
    assert sidemux.get("/livez/extra").status == 404
    assert_alive(sidemux)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_405(sidemux, method):
    resp = sidemux.get("/livez", method=method, headers={"Content-Length": "0"})
    assert resp.status == 405
    allow = {m.strip().upper() for m in (resp.header("allow") or "").split(",") if m.strip()}
    assert allow == {"GET", "HEAD"}, resp.header("allow")
    assert_alive(sidemux)


def test_405_with_body_then_next_request_on_same_connection(sidemux):
    with connect(sidemux.port) as s:
        s.sendall(build_request("/health", "POST", body=b"hello world") + build_request("/livez"))
        reader = ResponseReader(s)
        first = reader.read_response()
        assert first.status == 405
        try:
            second = reader.read_response()
        except ConnectionClosed:
            second = None  # closing after a request with a body is allowed
        if second is not None:
            assert second.status == 200 and second.body.strip() == b"ok", second
    assert_alive(sidemux)


def test_admin_allow_403(sidemux_factory):
    sm = sidemux_factory(base_config(admin={"allow": ["10.0.0.0/8"]}))
    assert sm.get("/metrics").status == 403
    assert sm.get("/debug/vars").status == 403
    # the other endpoints are not admin-only
    assert sm.get("/livez").status == 200
    assert sm.get("/version").status == 200
    assert sm.get("/health").status == 503
    assert sm.stop() == 0


def test_admin_allow_loopback_default(sidemux):
    assert sidemux.get("/metrics").status == 200
    assert sidemux.get("/debug/vars").status == 200


# ---------------------------------------------------------- connection reuse

def test_keep_alive(sidemux):
    paths = ["/livez", "/version", "/health", "/livez", "/nope", "/metrics", "/livez"]
    want = [200, 200, 503, 200, 404, 200, 200]
    with connect(sidemux.port) as s:
        reader = ResponseReader(s)
        for path, status in zip(paths, want):
            s.sendall(build_request(path))
            resp = reader.read_response()
            assert resp.status == status, (path, resp)
            assert (resp.header("connection") or "").lower() != "close", resp
        data, closed = read_until_close(s, timeout=0.3)
        assert closed is None and data == b"", "server closed a keep-alive connection"
    m = sidemux.metrics()
    assert m.value("sidemux_connections_accepted_total", listener="client", protocol="http1", tls="false") == 2


def test_http10_closes_after_response(sidemux):
    with connect(sidemux.port) as s:
        s.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
        reader = ResponseReader(s)
        resp = reader.read_response()
        assert resp.status == 200 and resp.body.strip() == b"ok"
        data, closed = read_until_close(s, timeout=5)
        assert closed is not None, "HTTP/1.0 connection left open"
        assert data == b"" and not reader.buf


def test_connection_close_honoured(sidemux):
    with connect(sidemux.port) as s:
        s.sendall(build_request("/version", headers={"Connection": "close"}))
        resp = ResponseReader(s).read_response()
        assert resp.status == 200
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None, "Connection: close not honoured"


def test_pipelining_10000(sidemux):
    n = 10000
    livez, version = build_request("/livez"), build_request("/version")
    payload = b"".join(livez if i % 2 == 0 else version for i in range(n))
    with connect(sidemux.port, timeout=30) as s:
        errors = []

        def writer():
            try:
                s.sendall(payload)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        reader = ResponseReader(s, timeout=30)
        deadline = time.monotonic() + 60
        version_body = None
        for i in range(n):
            assert time.monotonic() < deadline, f"only {i} of {n} responses in 60 s"
            resp = reader.read_response()
            assert resp.status == 200, (i, resp)
            if i % 2 == 0:
                assert resp.body.strip() == b"ok", (i, resp)
            else:
                if version_body is None:
                    version_body = resp.body
                    assert "sidemux" in json.loads(resp.body)
                assert resp.body == version_body, (i, resp)
        t.join(timeout=10)
        assert not errors, errors
        # still open and usable
        s.sendall(build_request("/livez"))
        assert reader.read_response().status == 200
    m = sidemux.metrics()
    assert m.value("sidemux_http_requests_total", path="/livez", code="200") == n // 2 + 1
    assert m.value("sidemux_http_requests_total", path="/version", code="200") == n // 2


# ------------------------------------------------------------------- abuse

def test_oversize_header_431_and_close(sidemux):
    with connect(sidemux.port) as s:
        send_bytes(s, build_request("/livez", headers={"X-Big": "a" * 20000}))
        reader = ResponseReader(s)
        resp = reader.read_response()
        assert resp.status == 431, resp
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None, "connection left open after 431"
    assert_alive(sidemux)
    assert sidemux.stop() == 0


def test_many_headers_over_limit_431(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"max_http1_request_bytes": 1024}))
    with connect(sm.port) as s:
        send_bytes(s, build_request("/livez", headers={f"X-H{i}": "v" * 30 for i in range(60)}))
        resp = ResponseReader(s).read_response()
        assert resp.status == 431, resp
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None
    # just under the limit is fine
    assert sm.get("/livez", headers={"X-Small": "v" * 500}).status == 200
    assert sm.stop() == 0


@pytest.mark.parametrize("raw", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET /livez HTTX/1.1\r\nHost: x\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nBad Header Line\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
], ids=["garbage-line", "bad-version", "header-without-colon", "bad-content-length"])
def test_malformed_400_and_close(sidemux, raw):
    with connect(sidemux.port) as s:
        send_bytes(s, raw)
        resp = ResponseReader(s).read_response()
        assert resp.status == 400, resp
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None, "connection left open after 400"
    assert_alive(sidemux)
    m = sidemux.metrics()
    assert m.value("sidemux_connections_rejected_total", listener="client", reason="bad_request") == 1
    assert sidemux.stop() == 0


def test_malformed_after_good_request_on_same_connection(sidemux):
    with connect(sidemux.port) as s:
        s.sendall(build_request("/livez") + b"NOT HTTP AT ALL\r\n\r\n")
        reader = ResponseReader(s)
        assert reader.read_response().status == 200
        assert reader.read_response().status == 400
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None
    assert_alive(sidemux)


def test_random_bytes_closed(sidemux):
    junk = random.Random(20240601).randbytes(64 * 1024)
    with connect(sidemux.port) as s:
        send_bytes(s, junk)
        data, closed = read_until_close(s, timeout=10)
        assert closed is not None, "connection fed 64 KiB of random bytes left open"
        if data:
            assert data.startswith(b"HTTP/1.1 400") or data.startswith(b"HTTP/1.0 400"), data[:100]
    assert_alive(sidemux)
    assert sidemux.stop() == 0


def test_every_abuse_then_clean_exit(sidemux):
    """All the abuse in a row on one process; it still answers and exits 0."""
    for raw in (build_request("/livez", headers={"X-Big": "b" * 20000}),
                b"\x00\x01\x02garbage\r\n\r\n",
                random.Random(7).randbytes(64 * 1024),
                b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n"):
        with connect(sidemux.port) as s:
            send_bytes(s, raw)
            _, closed = read_until_close(s, timeout=10)
            assert closed is not None
        assert_alive(sidemux)
    assert sidemux.stop() == 0


def test_workers_share_one_port(sidemux_factory):
    sm = sidemux_factory(base_config(workers=2))
    for _ in range(20):
        assert sm.get("/livez").status == 200
    addresses = {e["address"] for e in sm.log_lines()
                 if e.get("msg") == "listening" and e.get("listener") == "client"}
    assert addresses == {f"{HOST}:{sm.port}"}, addresses
    assert sm.stop() == 0

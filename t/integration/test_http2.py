"""HTTP/2 with prior knowledge: local paths, gRPC to an unhealthy cluster, concurrency, abuse."""

import json
import random

import pytest

from conftest import (FRAME_GOAWAY, HOST, H2_PREFACE, H2Client, base_config, connect, parse_frames,
                      read_until_close, run, send_bytes)


def assert_alive(sm):
    resp = sm.get("/livez")
    assert resp.status == 200 and resp.body.strip() == b"ok", resp


def test_local_paths_over_h2(sidemux):
    with H2Client(sidemux.port) as c:
        livez = c.get("/livez")
        assert livez.status == 200 and livez.data.strip() == b"ok"
        health = c.get("/health")
        assert health.status == 503
        assert health.header("content-type").split(";")[0] == "application/json"
        body = json.loads(health.data)
        assert body["health"] == "false" and body["reason"], body
        version = c.get("/version")
        assert version.status == 200
        v = json.loads(version.data)
        for key in ("sidemux", "libuv", "nghttp2", "llhttp", "openssl"):
            assert key in v, v
        metrics = c.get("/metrics")
        assert metrics.status == 200 and b"sidemux_connections_accepted_total" in metrics.data
        sid = c.request("/version", method="HEAD")
        head = c.wait([sid])[0]
        assert head.status == 200 and bytes(head.data) == b""
        sid = c.request("/livez", method="DELETE")
        assert c.wait([sid])[0].status == 405


def _assert_trailers_only_unavailable(st):
    assert st.headers is not None, \
        f"no response HEADERS on the stream (events {st.events}, RST_STREAM code {st.reset})"
    # trailers-only: one HEADERS frame carrying END_STREAM, no DATA and no separate trailers
    assert st.events[:2] == ["ResponseReceived", "StreamEnded"], st.events
    assert not st.data and st.trailers is None
    # RFC 9113 8.1: after a complete response the server may reset the rest of the request with NO_ERROR
    assert st.reset in (None, 0), f"stream reset with {st.reset}"
    assert st.status == 200, st.headers
    assert st.header("content-type") == "application/grpc", st.headers
    assert st.header("grpc-status") == "14", st.headers
    assert st.header("grpc-message"), st.headers


def test_grpc_unavailable_trailers_only(sidemux):
    with H2Client(sidemux.port) as c:
        sid = c.grpc_request("/etcdserverpb.KV/Range")
        _assert_trailers_only_unavailable(c.wait([sid])[0])
        # the connection stays usable
        assert c.get("/livez").status == 200
    assert_alive(sidemux)


def test_grpcio_client_gets_unavailable(sidemux):
    import grpc
    channel = grpc.insecure_channel(f"{HOST}:{sidemux.port}")
    try:
        call = channel.unary_unary("/etcdserverpb.KV/Range")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        assert err.value.details(), "empty grpc-message"
    finally:
        channel.close()


def test_100_concurrent_streams(sidemux):
    with H2Client(sidemux.port) as c:
        c.wait_settings()
        kinds = {}
        for i in range(100):
            if i % 4 == 0:
                sid = c.grpc_request("/etcdserverpb.KV/Range", flush=False)
                kinds[sid] = "grpc"
            else:
                path = ("/livez", "/version", "/health")[i % 4 - 1]
                sid = c.request(path, flush=False)
                kinds[sid] = path
        c.flush()  # all 100 requests leave in one write, before any response is read
        results = c.wait(list(kinds), timeout=20)
        assert len(results) == 100
        for st in results:
            kind = kinds[st.sid]
            if kind == "grpc":
                _assert_trailers_only_unavailable(st)
                continue
            assert st.reset is None, (kind, st.reset)
            if kind == "/livez":
                assert st.status == 200 and st.data.strip() == b"ok"
            elif kind == "/version":
                assert st.status == 200 and "sidemux" in json.loads(st.data)
            else:
                assert st.status == 503
    m = sidemux.metrics()
    assert m.value("sidemux_connections_accepted_total", listener="client", protocol="h2", tls="false") == 1
    assert m.value("sidemux_http_requests_total", path="/livez", code="200") == 25
    assert m.value("sidemux_streams_active") == 0


def test_server_settings_advertise_max_concurrent_streams(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"max_concurrent_streams": 7}))
    with H2Client(sm.port) as c:
        c.wait_settings()
        assert c.conn.remote_settings.max_concurrent_streams == 7


def _expect_goaway_or_close(sock, timeout=5):
    data, closed = read_until_close(sock, timeout=timeout)
    assert closed is not None, f"connection left open after invalid frames; got {data[:80]!r}"
    if data:
        frames = parse_frames(data)
        goaways = [f for f in frames if f[0] == FRAME_GOAWAY]
        assert goaways, f"server sent bytes but no GOAWAY: {frames[:5]}"
        error_code = int.from_bytes(goaways[-1][3][4:8], "big")
        assert error_code != 0, "GOAWAY for a connection error must carry an error code"


SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("after_preface", [
    random.Random(99).randbytes(4096),
    SETTINGS_EMPTY + random.Random(100).randbytes(4096),
    SETTINGS_EMPTY + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 100,  # DATA longer than max frame size
    SETTINGS_EMPTY + b"\x00\x00\x04\x01\x05\x00\x00\x00\x01" + b"\x80" * 4,  # HPACK index 0: COMPRESSION_ERROR
    SETTINGS_EMPTY + b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\x00" * 8,  # PING on a stream
    b"\x00\x00\x00\x01\x05\x00\x00\x00\x01",  # HEADERS instead of the SETTINGS that must come first
], ids=["random", "settings-random", "oversize-frame", "bad-hpack", "ping-on-stream", "no-settings"])
def test_invalid_frames_after_preface(sidemux, after_preface):
    with connect(sidemux.port) as s:
        send_bytes(s, H2_PREFACE + after_preface)
        _expect_goaway_or_close(s)
    assert_alive(sidemux)
    with H2Client(sidemux.port) as c:
        assert c.get("/livez").status == 200
    assert sidemux.stop() == 0


def test_curl_http2_prior_knowledge(sidemux):
    proc = run(["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code} %{http_version}",
                "--max-time", "10", f"http://{HOST}:{sidemux.port}/livez"])
    assert proc.returncode == 0, proc.stderr
    body, _, tail = proc.stdout.rpartition("\n")
    assert body.strip() == "ok", proc.stdout
    assert tail == "200 2", tail


def test_nghttp_client(sidemux):
    proc = run(["nghttp", "-t", "10", f"http://{HOST}:{sidemux.port}/version"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sidemux" in json.loads(proc.stdout), proc.stdout


def test_h2_then_http1_on_separate_connections(sidemux):
    with H2Client(sidemux.port) as c:
        assert c.get("/livez").status == 200
        assert_alive(sidemux)  # HTTP/1 while an h2 connection is open
        assert c.get("/livez").status == 200

"""SIGTERM / SIGINT: stop accepting, close idle connections, exit 0."""

import json
import os
import signal
import socket
import time

import pytest

from conftest import (FRAME_GOAWAY, ConnectionClosed, HOST, H2Client, ResponseReader, base_config, build_request, connect,
                      parse_frames, read_until_close)

DRAIN = 20  # drain_timeout in the configs below, in seconds


def drain_config():
    return base_config(limits={"drain_timeout": f"{DRAIN}s"})


def _refused(port):
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            data, closed = read_until_close(s, timeout=2)
            return closed is not None
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_idle_keepalive_connection(sidemux_factory, sig):
    sm = sidemux_factory(drain_config())
    with connect(sm.port) as s:
        s.sendall(build_request("/livez"))
        reader = ResponseReader(s)
        assert reader.read_response().status == 200
        t0 = time.monotonic()
        os.kill(sm.pid, sig)
        # the idle keep-alive connection has nothing in flight: it is closed, not kept for the drain
        data, closed = read_until_close(s, timeout=DRAIN + 5)
        assert closed is not None, "idle keep-alive connection not closed after the signal"
        assert data == b"", f"unexpected bytes on an idle connection: {data[:100]!r}"
    code = sm.wait_exit(timeout=DRAIN + 5)
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit code {code} after {sig.name}"
    assert elapsed < DRAIN / 2, f"took {elapsed:.1f}s to exit with only an idle connection open"
    assert _refused(sm.port), "still accepting after exit"


def test_sigterm_with_pipelined_requests_ends_cleanly(sidemux_factory):
    """SIGTERM while a connection has many pipelined requests: every response that was
    started is complete, the connection is closed, and the process exits 0.

    Requests still unread in the socket buffer when the signal lands are not in flight;
    the server may close without reading them (RFC 9112 9.6), so how many get answered,
    and whether the last one carries Connection: close, is a race and not asserted here."""
    sm = sidemux_factory(drain_config())
    n = 2000
    with connect(sm.port, timeout=30) as s:
        s.sendall(b"".join(build_request("/version") for _ in range(n)))
        reader = ResponseReader(s, timeout=30)
        first = reader.read_response()
        assert first.status == 200
        os.kill(sm.pid, signal.SIGTERM)
        answered = 1
        for _ in range(n - 1):
            try:
                resp = reader.read_response()
            except (ConnectionClosed, TimeoutError):
                break
            assert resp.status == 200, resp
            answered += 1
        data, closed = read_until_close(s, timeout=DRAIN + 5)
        assert closed is not None, f"connection still open after SIGTERM ({answered} of {n} answered)"
        assert not reader.buf and data == b"", f"partial response left: {bytes(reader.buf[:100]) + data[:100]!r}"
    assert sm.wait_exit(timeout=DRAIN + 5) == 0


def test_sigterm_sends_goaway_to_h2_client(sidemux_factory):
    sm = sidemux_factory(drain_config())
    c = H2Client(sm.port)
    try:
        assert c.get("/livez").status == 200
        t0 = time.monotonic()
        os.kill(sm.pid, signal.SIGTERM)
        data, closed = read_until_close(c.sock, timeout=DRAIN + 5)
        frames = parse_frames(data)
        assert any(f[0] == FRAME_GOAWAY for f in frames), f"no GOAWAY before close: {frames}"
        assert closed is not None, "h2 connection with no open stream not closed after GOAWAY"
    finally:
        c.close()
    assert sm.wait_exit(timeout=DRAIN + 5) == 0
    assert time.monotonic() - t0 < DRAIN / 2


def test_sigterm_no_connections_exit_0_and_logs_are_json(sidemux_factory):
    sm = sidemux_factory()
    assert sm.get("/livez").status == 200
    assert sm.stop(signal.SIGTERM) == 0
    lines = sm.raw_lines()
    assert lines, "nothing logged"
    for line in lines:
        entry = json.loads(line)  # every stderr line is one JSON object
        assert isinstance(entry, dict), line
        for key in ("ts", "level", "msg"):
            assert key in entry, f"{key} missing in {line}"
    assert any(e.get("msg") == "listening" and e.get("listener") == "client" for e in map(json.loads, lines))

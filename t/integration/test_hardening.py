"""Regression tests for the hardening fixes: flow-control windows, member resets,
request-head deadlines, idle and write-stall timeouts, huge grpc-timeout values
and reloads that change the listeners.

Each test reproduces a way an earlier binary misbehaved (a hang, a stall, a
crash or a connection held open) and asserts the fixed behaviour with bounded
waits. Two of the old faults (the listener removed on reload, the grpc-timeout
overflow) are memory or UB errors that only the ASan+UBSan tree reports; the
sidemux_factory teardown fails the test on such a report. Flow-control facts the
tests rely on: sidemux advertises 64 KiB initial stream windows to clients and
4 KiB ones to members (growing to at most 256 KiB while their bytes move on) and a 1 MiB connection window on both
sides; connection windows reopen as bytes arrive, stream windows only as bytes
move on.
"""

import os
import signal
import socket
import threading
import time
import uuid

import grpc
import h2.config
import h2.connection
import pytest

import grpc_testsvc
from conftest import (HOST, ConnectionClosed, H2Client, ResponseReader, StreamResult, base_config, build_request,
                      connect, http_request, parse_metrics, read_until_close, sanitizer_report, send_bytes, wait_members_up)
from test_grpc_forwarding import FakeMember, channel, gen  # noqa: F401  (gen is a fixture)

KIB = 1 << 10
MIB = 1 << 20
STREAM_WINDOW = 65535  # a new client stream's (the RFC default)
MEMBER_STREAM_WINDOW = 4 * KIB  # a new member stream's
MAX_STREAM_WINDOW = 256 * KIB
CANCELLED_UPLOADS = MIB // STREAM_WINDOW + 24  # more than the connection window
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]


# --------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def echo(gen):
    """One sidemuxtest.Echo server (s1), stopped by PID at teardown."""
    server = grpc_testsvc.EchoServer("s1", gen[2]).start()
    yield server
    server.stop()


def one_member_config(address, name="s1", workers=1, **cluster):
    """One listener, one member, one worker (every connection shares the same member connection)."""
    cfg = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": workers,
        "cluster": {"members": [{"name": name, "address": address}], "connect_timeout": "1s"},
        "log": {"level": "info", "access_log": False},
    }
    cfg["cluster"].update(cluster)
    return cfg


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


def request_headers(port, path, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", f"{HOST}:{port}")] + GRPC_HEADERS + list(extra)


def pump_for(client, seconds):
    """Process whatever the server sends for `seconds` (window updates, settings, resets)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not client.pump(deadline):
                return False
        except TimeoutError:
            break
    return True


def wait_connection_window(client, need, deadline, what, why="bytes sidemux received were not given back"):
    """Pump until the connection's send window holds `need` bytes; fail at the deadline."""
    while client.conn.outbound_flow_control_window < need:
        try:
            if not client.pump(deadline):
                pytest.fail(f"{what}: sidemux closed the connection (goaway={client.goaway})")
        except TimeoutError:
            pytest.fail(f"{what}: the client connection's window stayed at "
                        f"{client.conn.outbound_flow_control_window} bytes (needed {need}): {why}")


def rejected(sm, reason, listener="client"):
    return sm.metrics().value("sidemux_connections_rejected_total", listener=listener, reason=reason) or 0


def close_time(sock, start, timeout, out):
    """Thread body: read sock until it closes; out gets (seconds after start, how, bytes read)."""
    data, how = read_until_close(sock, timeout=timeout)
    out.append((time.monotonic() - start, how, data))


# --------------------------------------------------------------------------
# 1. Cancelled uploads must give their bytes back to the client connection window


def test_cancelled_uploads_do_not_leak_client_connection_window(gen, echo, sidemux_factory):
    """40 x (HEADERS + one stream window of DATA + RST_STREAM(CANCEL)) in one write each, 2.5 MiB in all
    on a connection whose window is 1 MiB: the window must keep reopening, and a unary
    call on the same connection afterwards must complete."""
    pb2 = gen[0]
    sm = sidemux_factory(one_member_config(echo.address))
    wait_members_up(sm, ["s1"], 10.0)
    # A gRPC message header announcing 1 MiB, then filler: the member keeps waiting for more.
    body = b"\x00" + MIB.to_bytes(4, "big")
    body += b"\x5a" * (STREAM_WINDOW - len(body))
    chunks = [body[i:i + 16 * KIB] for i in range(0, len(body), 16 * KIB)]
    with H2Client(sm.port, timeout=5) as c:
        c.wait_settings()
        assert c.conn.remote_settings.initial_window_size == STREAM_WINDOW, c.conn.remote_settings
        pump_for(c, 0.2)  # the connection WINDOW_UPDATE to 1 MiB
        assert c.conn.outbound_flow_control_window >= MIB - STREAM_WINDOW, c.conn.outbound_flow_control_window
        deadline = time.monotonic() + 10
        for i in range(CANCELLED_UPLOADS):
            wait_connection_window(c, len(body), deadline, f"cancelled upload {i + 1} of {CANCELLED_UPLOADS}",
                                   "the bytes of cancelled streams were never given back")
            sid = c.conn.get_next_available_stream_id()
            c.streams[sid] = StreamResult(sid)
            c.conn.send_headers(sid, request_headers(sm.port, "/sidemuxtest.Echo/ClientStream"))
            for chunk in chunks:
                c.conn.send_data(sid, chunk)
            c.conn.reset_stream(sid, 8)  # CANCEL
            c.flush()  # HEADERS, DATA and RST_STREAM in one write
            if i % 10 == 9:
                pump_for(c, 0.01)
        assert not c.closed and c.goaway is None, f"sidemux ended the connection: {c.goaway}"

        # A normal unary call on the same connection.
        t0 = time.monotonic()
        msg = grpc_frame(pb2.Msg(seq=42, payload=b"after").SerializeToString())
        wait_connection_window(c, len(msg), t0 + 5, f"unary call after {CANCELLED_UPLOADS} cancelled uploads",
                               "the bytes of cancelled streams were never given back")
        sid = c.request("/sidemuxtest.Echo/Unary", "POST", GRPC_HEADERS, msg)
        try:
            st = c.wait([sid], timeout=max(0.1, t0 + 5 - time.monotonic()))[0]
        except TimeoutError:
            pytest.fail(f"the unary call hung after {CANCELLED_UPLOADS} cancelled uploads "
                        f"(send window {c.conn.outbound_flow_control_window})")
        elapsed = time.monotonic() - t0
    fields = dict((st.headers or []) + (st.trailers or []))
    assert st.reset is None and fields.get("grpc-status") == "0", (st.events, st.headers, st.trailers)
    reply = pb2.Msg.FromString(bytes(st.data[5:]))
    assert (reply.seq, reply.payload, reply.server) == (42, b"after", "s1"), reply
    assert elapsed < 5, f"unary call took {elapsed:.2f}s"
    # The cancelled uploads did reach sidemux (more than the 1 MiB window).
    down_in = sm.metrics().value("sidemux_bytes_total", side="downstream", direction="in")
    assert down_in >= CANCELLED_UPLOADS * len(body), f"sidemux read only {down_in} bytes from the client"


def test_slow_member_does_not_pin_client_connection_window(gen, echo, sidemux_factory):
    """Six uploads to a member that stops reading, on one client connection: each may
    hold its own 256 KiB stream window in sidemux, but not the connection's 1 MiB
    window, so a unary call on the same connection still goes through."""
    pb2 = gen[0]
    sm = sidemux_factory(one_member_config(echo.address))
    wait_members_up(sm, ["s1"], 10.0)
    # Empty gRPC messages; the member reads none for 8 s (its window fills, then sidemux's buffers).
    chunk = b"\x00" * (16 * KIB)
    with H2Client(sm.port, timeout=5) as c:
        c.wait_settings()
        pump_for(c, 0.2)
        sids = []
        for _ in range(6):
            sid = c.conn.get_next_available_stream_id()
            c.streams[sid] = StreamResult(sid)
            c.conn.send_headers(sid, request_headers(sm.port, "/sidemuxtest.Echo/Upload",
                                                     [("x-read-delay-ms", "8000")]))
            sids.append(sid)
        c.flush()
        # Push on every stream until neither sidemux nor the member takes more (0.3 s without window).
        sent = dict.fromkeys(sids, 0)
        deadline = time.monotonic() + 10
        last_progress = time.monotonic()
        while time.monotonic() - last_progress < 0.3:
            assert time.monotonic() < deadline, f"uploads never stalled: {sent}"
            progress = False
            for sid in sids:
                n = min(c.conn.local_flow_control_window(sid), c.conn.outbound_flow_control_window, len(chunk))
                if n > 0:
                    c.conn.send_data(sid, chunk[:n])
                    sent[sid] += n
                    progress = True
            c.flush()
            if progress:
                last_progress = time.monotonic()
            pump_for(c, 0.001 if progress else 0.05)
        assert not c.closed and c.goaway is None, c.goaway
        held = {sid: c.conn.local_flow_control_window(sid) for sid in sids}
        assert all(w == 0 for w in held.values()) or c.conn.outbound_flow_control_window == 0, \
            f"the member kept reading: stream windows {held}, sent {sent}"

        t0 = time.monotonic()
        msg = grpc_frame(pb2.Msg(seq=7, payload=b"beside").SerializeToString())
        wait_connection_window(c, len(msg), t0 + 3, f"unary call beside 6 stalled uploads (sent {sent})",
                               "the uploads' buffered bytes hold the whole connection window")
        sid = c.request("/sidemuxtest.Echo/Unary", "POST", GRPC_HEADERS, msg)
        try:
            st = c.wait([sid], timeout=max(0.1, t0 + 3 - time.monotonic()))[0]
        except TimeoutError:
            pytest.fail("the unary call hung beside 6 stalled uploads")
        elapsed = time.monotonic() - t0
    fields = dict((st.headers or []) + (st.trailers or []))
    assert st.reset is None and fields.get("grpc-status") == "0", (st.events, st.headers, st.trailers)
    assert pb2.Msg.FromString(bytes(st.data[5:])).payload == b"beside"
    assert elapsed < 3, f"unary call took {elapsed:.2f}s"
    # Flow control still holds each upload back: sidemux buffered at most a stream window each.
    assert all(w == 0 for w in held.values()), f"stream windows left: {held}"


# --------------------------------------------------------------------------
# 2. One slow client must not stall a member for everyone else


def test_slow_client_does_not_stall_member(gen, echo, sidemux_factory):
    pb2, pb2_grpc = gen[0], gen[1]
    # One worker, one member: the slow streams and the other client's calls share
    # one member connection. Fast health checks: a pinned connection would get the
    # member marked down within a second.
    sm = sidemux_factory(one_member_config(
        echo.address, health_check={"interval": "250ms", "timeout": "200ms", "unhealthy_threshold": 2}))
    wait_members_up(sm, ["s1"], 10.0)

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(5)
    slow.connect((HOST, sm.port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    req = grpc_frame(pb2.DownloadRequest(mib=20).SerializeToString())
    for _ in range(6):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers(sm.port, "/sidemuxtest.Echo/Download"))
        conn.send_data(sid, req, end_stream=True)
    slow.sendall(conn.data_to_send())  # and never a recv() on this socket
    ch = None
    try:
        # Wait until the six downloads took what their stream windows allow.
        deadline = time.monotonic() + 5
        while True:
            m = sm.metrics()
            active = m.value("sidemux_member_active_streams", member="s1")
            up_in = m.value("sidemux_bytes_total", side="upstream", direction="in") or 0
            if active == 6 and up_in >= 6 * MEMBER_STREAM_WINDOW:
                break
            assert time.monotonic() < deadline, f"downloads did not start: active {active}, upstream in {up_in}"
            time.sleep(0.02)
        time.sleep(0.3)  # the member is now blocked on the six streams

        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        t0 = time.monotonic()
        ups = []
        for i in range(100):
            try:
                reply = stub.Unary(pb2.Msg(seq=i, payload=b"q"), timeout=5)
            except grpc.RpcError as e:
                pytest.fail(f"call {i} failed after {time.monotonic() - t0:.2f}s while a slow client held "
                            f"6 downloads: {e.code()} {e.details()}")
            assert reply.seq == i and reply.server == "s1"
            if i % 10 == 0:
                ups.append(sm.metrics().value("sidemux_member_up", member="s1"))
        elapsed = time.monotonic() - t0
        # Health checks keep passing: several intervals (250 ms) later the member is still up.
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            ups.append(sm.metrics().value("sidemux_member_up", member="s1"))
            time.sleep(0.1)
        m = sm.metrics()
        assert m.value("sidemux_member_active_streams", member="s1") == 6, \
            "the slow client's downloads ended: the test did not hold them open"
    finally:
        if ch is not None:
            ch.close()
        slow.close()
    assert elapsed < 5, f"100 unary calls took {elapsed:.2f}s beside a slow client"
    assert ups and all(u == 1 for u in ups), f"sidemux_member_up samples: {ups}"
    # Bounded buffering: each slow stream holds at most a 256 KiB stream window.
    up_in = m.value("sidemux_bytes_total", side="upstream", direction="in")
    assert up_in < 6 * MAX_STREAM_WINDOW + 2 * MIB, f"sidemux read {up_in} bytes from the member"


# --------------------------------------------------------------------------
# 3. A member RST_STREAM(NO_ERROR) before END_STREAM fails the call at once


def test_member_reset_no_error_before_end_fails_call(gen, sidemux_factory):
    pb2, pb2_grpc = gen[0], gen[1]
    fake = FakeMember("reset", reset_code=0)  # HEADERS, one message, RST_STREAM(NO_ERROR)
    try:
        sm = sidemux_factory(one_member_config(fake.address, name="bad"))
        wait_members_up(sm, ["bad"], 10.0)
        ch = channel(sm.port)
        try:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                pb2_grpc.EchoStub(ch).Unary(pb2.Msg(seq=1), timeout=10)
            elapsed = time.monotonic() - t0
        finally:
            ch.close()
        err = info.value
        assert elapsed < 2, f"the call ended after {elapsed:.2f}s ({err.code()}): it waited for its deadline"
        assert err.code() == grpc.StatusCode.INTERNAL, (err.code(), err.details())

        # The same over raw HTTP/2: a reset (INTERNAL_ERROR) or grpc-status 13, never a clean end.
        with H2Client(sm.port, timeout=5) as c:
            t0 = time.monotonic()
            sid = c.grpc_request("/sidemuxtest.Echo/Unary", pb2.Msg(seq=2).SerializeToString())
            try:
                st = c.wait([sid], timeout=2)[0]
            except TimeoutError:
                pytest.fail("raw HTTP/2 stream still open 2s after the member reset it")
        fields = dict((st.headers or []) + (st.trailers or []))
        assert st.reset == 2 or (st.reset is None and fields.get("grpc-status") == "13"), \
            (st.reset, st.events, st.headers, st.trailers)
        assert fake.streams == 2, f"member saw {fake.streams} streams (a stream that reached it is never replayed)"
    finally:
        fake.close()


# --------------------------------------------------------------------------
# 4. Slowloris: a request head has classify_timeout to arrive whole


def test_slow_request_head_closed_after_classify_timeout(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"classify_timeout": "1s", "idle_timeout": "30s"}))
    before = rejected(sm, "classify_timeout")
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n"
    socks = []
    try:
        # A complete keep-alive request, then silence.
        keep = connect(sm.port)
        socks.append(keep)
        keep.sendall(build_request("/livez"))
        reader = ResponseReader(keep, timeout=5)
        assert reader.read_response().status == 200
        t_keep = time.monotonic()

        # A partial head, then silence (watched by a thread).
        silent = connect(sm.port)
        socks.append(silent)
        silent_result = []
        t_silent = time.monotonic()
        silent.sendall(head)
        watcher = threading.Thread(target=close_time, args=(silent, t_silent, 4.0, silent_result), daemon=True)
        watcher.start()

        # The slow client: the head's start, then one header byte every 200 ms.
        drip = connect(sm.port)
        socks.append(drip)
        t0 = time.monotonic()
        drip.sendall(head)
        trickle = b"X-Slow: " + b"a" * 40
        closed_at, how = None, None
        for i in range(len(trickle)):
            data, how = read_until_close(drip, timeout=0.2)
            assert data == b"", f"sidemux answered an incomplete head: {data[:200]!r}"
            if how is not None:
                closed_at = time.monotonic() - t0
                break
            if not send_bytes(drip, trickle[i:i + 1]):
                closed_at, how = time.monotonic() - t0, "send failed"
                break
            if time.monotonic() - t0 > 4:
                break
        assert closed_at is not None, "a head sent one byte every 200 ms was still open after 4s"
        assert 0.9 <= closed_at <= 2.0, f"slow head closed {closed_at:.2f}s after its first byte ({how})"

        watcher.join(5)
        assert silent_result, "silent partial head: watcher did not finish"
        s_at, s_how, s_data = silent_result[0]
        assert s_how is not None, "a silent partial head was still open after 4s"
        assert s_data == b"", f"sidemux answered an incomplete head: {s_data[:200]!r}"
        assert 0.9 <= s_at <= 2.0, f"silent partial head closed {s_at:.2f}s after its first byte"

        # The complete request followed by silence is left alone (idle_timeout is 30 s).
        wait_more = 2.0 - (time.monotonic() - t_keep)
        data, how = read_until_close(keep, timeout=max(0.0, wait_more))
        assert how is None and data == b"", f"keep-alive connection closed after a complete request ({how})"
        assert time.monotonic() - t_keep >= 2.0
        keep.sendall(build_request("/livez"))
        assert reader.read_response().status == 200, "keep-alive connection unusable after 2s of silence"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 2
    while rejected(sm, "classify_timeout") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rejected(sm, "classify_timeout") == before + 2, sm.metrics().series("sidemux_connections_rejected_total")


# --------------------------------------------------------------------------
# 5. An idle HTTP/2 connection gets a GOAWAY before it is closed


def test_idle_h2_connection_gets_goaway_before_close(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"idle_timeout": "1s"}))
    with H2Client(sm.port, timeout=5) as c:
        st = c.get("/livez")
        assert st.status == 200 and st.ended
        t0 = time.monotonic()
        deadline = t0 + 4
        order = []
        try:
            while True:
                alive = c.pump(deadline)
                if c.goaway is not None and "goaway" not in order:
                    order.append("goaway")
                if not alive:
                    order.append("eof")
                    break
        except TimeoutError:
            pytest.fail(f"idle HTTP/2 connection still open 4s later (idle_timeout 1s); seen {order}")
        closed_after = time.monotonic() - t0
    assert order == ["goaway", "eof"], f"events before the close: {order}"
    assert c.goaway.error_code == 0, c.goaway
    assert c.goaway.last_stream_id == st.sid, c.goaway
    assert 0.8 <= closed_after <= 2.5, f"closed {closed_after:.2f}s after the last request"


# --------------------------------------------------------------------------
# 6. A reload that removes a listener keeps the running listeners


def test_reload_removing_listener_keeps_running(sidemux_factory):
    """Listeners a and b, then a SIGHUP with only a. (An old binary swapped in the
    shorter listener list while its workers kept indexing listeners by position: a
    heap-buffer-overflow on the next connection to b, reported by ASan.) Now b is
    retired (SPEC: listeners follow the config) and a goes on, on every worker."""
    cfg = base_config(workers=2)
    cfg["listeners"] = [{"name": "a", "address": f"{HOST}:0"}, {"name": "b", "address": f"{HOST}:0"}]
    sm = sidemux_factory(cfg)
    # "started" follows the signal handlers (a SIGHUP right after "listening" is
    # test_sighup_right_after_listening_is_a_reload's subject, not this test's).
    assert sm.wait_log(lambda e: e.get("msg") == "started", timeout=5), sm.raw_lines()
    port_a, port_b = sm.port_of("a"), sm.port_of("b")
    new = dict(cfg)
    new["listeners"] = [cfg["listeners"][0]]  # a exactly as before; b removed
    sm.write_config(new)
    os.kill(sm.pid, signal.SIGHUP)
    assert sm.wait_log(lambda e: e.get("msg") == "listener removed; draining its connections"
                       and e.get("listener") == "b", timeout=5), sm.raw_lines()[-10:]
    deadline = time.monotonic() + 5
    while True:
        assert sm.proc.poll() is None, f"sidemux exited ({sm.proc.returncode}) after the reload: " \
                                       f"{sm.raw_lines()[-20:]}"
        resp = http_request(port_a, "/metrics")
        m = parse_metrics(resp.body.decode())
        if m.value("sidemux_config_reloads_total", result="success") == 1:
            break
        assert time.monotonic() < deadline, m.series("sidemux_config_reloads_total")
        time.sleep(0.02)
    assert (m.value("sidemux_config_reloads_total", result="failure") or 0) == 0
    # a answers on every worker (new connections land on either); b refuses.
    for _ in range(16):
        resp = http_request(port_a, "/livez", timeout=5)
        assert resp.status == 200 and resp.body.strip() == b"ok", resp
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((HOST, port_b), timeout=2).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "the removed listener still accepts"
        time.sleep(0.02)
    # A second reload (same file) still works, and the process stops cleanly.
    os.kill(sm.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while sm.metrics().value("sidemux_config_reloads_total", result="success") != 2:
        assert time.monotonic() < deadline, "second reload not counted"
        time.sleep(0.02)
    assert http_request(port_a, "/livez").status == 200
    code = sm.stop()
    assert code == 0, f"exit code {code}: {sm.raw_lines()[-20:]}"
    assert not sanitizer_report(sm.raw_lines()), sanitizer_report(sm.raw_lines())


def test_sighup_right_after_listening_is_a_reload(sidemux_factory):
    """A SIGHUP sent as soon as every "listening" line is out (what a supervisor or a
    test waits for) must be a reload, never the default action (terminate)."""
    for attempt in range(5):
        sm = sidemux_factory(base_config(workers=2), name=f"hup{attempt}")
        os.kill(sm.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while True:
            assert sm.proc.poll() is None, \
                f"attempt {attempt}: sidemux exited with {sm.proc.returncode} on a SIGHUP sent right after " \
                f"its listening line; stderr: {sm.raw_lines()}"
            try:
                if sm.metrics().value("sidemux_config_reloads_total", result="success") == 1:
                    break
            except (OSError, ConnectionClosed, TimeoutError):
                pass  # exited meanwhile: the check above says how
            assert time.monotonic() < deadline, f"attempt {attempt}: SIGHUP not counted as a reload"
            time.sleep(0.02)
        assert sm.stop() == 0


# --------------------------------------------------------------------------
# 7. grpc-timeout past what nanoseconds hold means "no deadline"


def test_huge_grpc_timeout_is_no_deadline(gen, echo, sidemux_factory):
    """99999999H overflows int64 nanoseconds. (The old binary's signed overflow is
    what UBSan reports and aborts on; without UBSan the wrapped value happened to
    be negative and became a never-firing timer.)"""
    pb2 = gen[0]
    sm = sidemux_factory(one_member_config(echo.address))
    wait_members_up(sm, ["s1"], 10.0)
    call_id = f"huge-{uuid.uuid4().hex[:8]}"
    msg = grpc_frame(pb2.SlowRequest(ms=100, call_id=call_id).SerializeToString())
    with H2Client(sm.port, timeout=5) as c:
        t0 = time.monotonic()
        sid = c.request("/sidemuxtest.Echo/Slow", "POST", GRPC_HEADERS + [("grpc-timeout", "99999999H")], msg)
        st = c.wait([sid], timeout=5)[0]
        elapsed = time.monotonic() - t0
    fields = dict((st.headers or []) + (st.trailers or []))
    assert st.reset is None, f"stream reset with {st.reset}: {st.events}"
    assert fields.get("grpc-status") == "0", (st.headers, st.trailers)
    reply = pb2.Msg.FromString(bytes(st.data[5:]))
    assert reply.text == call_id, reply
    assert 0.09 <= elapsed < 2, f"Slow(100 ms) took {elapsed:.3f}s"
    assert sm.proc.poll() is None
    assert sm.get("/livez").status == 200


# --------------------------------------------------------------------------
# 8. A client that stops reading its answers is closed after idle_timeout


def test_stalled_http1_writer_closed_after_idle_timeout(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"idle_timeout": "2s"}, workers=1))

    def http1_active():
        # the scrape's own connection counts itself
        return sm.metrics().value("sidemux_connections_active", listener="client", protocol="http1", tls="false")

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect((HOST, sm.port))
    try:
        t0 = time.monotonic()
        s.sendall(b"".join(build_request("/metrics") for _ in range(2000)))  # and never a recv()
        deadline = t0 + 2
        while http1_active() != 2:
            assert time.monotonic() < deadline, "the pipelining connection was never counted active"
            time.sleep(0.01)
        # others are served while the stalled connection is open
        time.sleep(0.5)
        assert sm.get("/livez").status == 200
        closed_at = None
        deadline = t0 + 5
        while time.monotonic() < deadline:
            if http1_active() == 1:
                closed_at = time.monotonic() - t0
                break
            time.sleep(0.05)
        assert closed_at is not None, "a client that stopped reading was still connected 5s later (idle_timeout 2s)"
        assert 1.8 <= closed_at <= 4.0, f"stalled connection closed {closed_at:.2f}s after the requests"
        # The client sees the close once it reads what was sent.
        _, how = read_until_close(s, timeout=5, limit=256 << 20)
        assert how in ("eof", "reset"), f"client did not see the close ({how})"
    finally:
        s.close()
    assert sm.get("/livez").status == 200
    assert sm.get("/metrics").status == 200

"""What a client cannot make sidemux do (SPEC "Fault paths", client side; issue 14).

- hold a connection with a header block it never finishes, or with PINGs alone;
- keep its connection, member streams and max_connections slot after vanishing
  behind an open stream (keepalive PINGs find it);
- make sidemux buffer more than about 1 MiB per connection by not reading;
- and the smaller ones: `host` without `:authority`, a deadline that fires in the
  middle of a response message, a failed TLS handshake counted twice.

Every test here failed on the binary before these fixes.
"""

import socket
import threading
import time
import uuid

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

import grpc_testsvc
from conftest import HOST, H2_PREFACE, H2Client, StreamResult, base_config, connect, read_until_close, wait_members_up
from h2_member import H2TestMember
from test_grpc_forwarding import channel, find_events, gen, vm_hwm_mib  # noqa: F401  (gen is a fixture)
from test_hardening import grpc_frame, one_member_config, rejected, request_headers
from test_tls import Certs, listener_tls

MIB = 1 << 20


@pytest.fixture(scope="module")
def echo(gen):
    """One Echo server with room for 400 concurrent streaming calls."""
    server = grpc_testsvc.EchoServer("s1", gen[2], max_workers=512).start()
    yield server
    server.stop()


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


SETTINGS = frame(0x4, 0, 0)
SETTINGS_ACK = frame(0x4, 0x1, 0)


def frames_of(data):
    """(type, flags, stream id) of each whole frame in raw server bytes."""
    out, pos = [], 0
    while pos + 9 <= len(data):
        n = int.from_bytes(data[pos:pos + 3], "big")
        if pos + 9 + n > len(data):
            break
        out.append((data[pos + 3], data[pos + 4], int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF))
        pos += 9 + n
    return out


def wait_closed(sock, timeout):
    """Read sock (answering nothing) until EOF; (seconds waited or None, bytes read)."""
    start = time.monotonic()
    data, how = read_until_close(sock, timeout=timeout)
    return (time.monotonic() - start if how is not None else None), data


# --------------------------------------------------------------------------
# 14.3 Header blocks have a deadline; control frames keep nothing alive


def test_half_sent_header_block_closed_after_classify_timeout(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"classify_timeout": "1s", "idle_timeout": "30s"}))
    before = rejected(sm, "classify_timeout")
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"),
                                    (":authority", "x")])
    sock = connect(sm.port)
    try:
        # HEADERS without END_HEADERS, and no CONTINUATION ever.
        sock.sendall(H2_PREFACE + SETTINGS + frame(0x1, 0x0, 1, block))
        waited, data = wait_closed(sock, timeout=5)
    finally:
        sock.close()
    assert waited is not None, "a connection with a half-sent header block was still open 5s later"
    assert 0.8 <= waited <= 2.5, f"closed {waited:.2f}s after the block began (classify_timeout 1s)"
    assert any(t == 0x7 for t, _, _ in frames_of(data)), f"no GOAWAY before the close: {frames_of(data)}"
    assert rejected(sm, "classify_timeout") == before + 1


def test_rejected_header_block_leaves_no_deadline(sidemux_factory):
    """A complete header block that nghttp2 rejects (over max_header_list_size)
    resets its stream and ends the block: the connection is not closed at
    classify_timeout for a block that never finishes."""
    sm = sidemux_factory(base_config(limits={"classify_timeout": "1s", "idle_timeout": "30s",
                                             "max_header_list_size": 1024}))
    before = rejected(sm, "classify_timeout")
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"),
                                    (":authority", "x"), ("x-big", "a" * 3000)])
    sock = connect(sm.port)
    try:
        sock.sendall(H2_PREFACE + SETTINGS + frame(0x1, 0x4 | 0x1, 1, block))  # END_HEADERS | END_STREAM
        waited, data = wait_closed(sock, timeout=3)
    finally:
        sock.close()
    assert waited is None, f"closed {waited:.2f}s after a complete, rejected header block: {frames_of(data)}"
    assert any(t == 0x3 for t, _, _ in frames_of(data)), f"the stream was not reset: {frames_of(data)}"
    assert rejected(sm, "classify_timeout") == before


def test_ping_only_connection_idles_out(sidemux_factory):
    sm = sidemux_factory(base_config(limits={"idle_timeout": "1s"}))
    with H2Client(sm.port, timeout=5) as c:
        c.wait_settings()
        t0 = time.monotonic()
        closed_after = None
        for i in range(40):  # a PING every 100 ms for up to 4 s
            try:
                if c.goaway is None:
                    c.conn.ping(i.to_bytes(8, "big"))
                    c.flush()
                next_ping = t0 + (i + 1) * 0.1
                while time.monotonic() < next_ping:
                    if not c.pump(next_ping):
                        closed_after = time.monotonic() - t0
                        break
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - t0
            if closed_after is not None:
                break
        assert closed_after is not None, "a connection busy only with PINGs was still open after 4s (idle_timeout 1s)"
        assert 0.8 <= closed_after <= 2.5, f"closed {closed_after:.2f}s in (idle_timeout 1s)"
        assert c.goaway is not None and c.goaway.error_code == 0, c.goaway


# --------------------------------------------------------------------------
# 14.4 Keepalive: a client that vanished behind an open stream is found


def test_silent_client_behind_open_stream_closed_and_member_stream_cancelled(gen, echo, sidemux_factory):
    pb2 = gen[0]
    cfg = one_member_config(echo.address)
    cfg["limits"] = {"keepalive_interval": "1s", "keepalive_timeout": "1s", "idle_timeout": "30s"}
    sm = sidemux_factory(cfg)
    wait_members_up(sm, ["s1"], 10.0)
    call_id = f"silent-{uuid.uuid4().hex[:8]}"
    c = H2Client(sm.port, timeout=5)
    try:
        c.wait_settings()
        sid = c.conn.get_next_available_stream_id()
        body = grpc_frame(pb2.SlowRequest(ms=30000, call_id=call_id).SerializeToString())
        c.conn.send_headers(sid, request_headers(sm.port, "/sidemuxtest.Echo/Slow"))
        c.conn.send_data(sid, body, end_stream=True)
        c.streams[sid] = StreamResult(sid)
        c.flush()
        deadline = time.monotonic() + 5
        while c.streams[sid].headers is None:  # Slow sends its initial metadata at once
            assert c.pump(deadline), "connection closed before the Slow call's headers"
        assert find_events(gen, {"s1": echo}, call_id, "started", timeout=3), "the member never started the call"
        # From here on the client answers nothing: no PING ACK, no frame at all.
        t0 = time.monotonic()
        waited, data = wait_closed(c.sock, timeout=6)
    finally:
        c.close()
    assert waited is not None, "a client silent behind an open stream was still connected 6s later"
    assert waited <= 3.5, f"closed {waited:.2f}s after the client fell silent (interval 1s + timeout 1s)"
    assert any(t == 0x6 and not f & 0x1 for t, f, _ in frames_of(data)), "sidemux sent no PING before closing"
    seen = find_events(gen, {"s1": echo}, call_id, "cancelled", timeout=3)
    assert seen, "the member's stream was not cancelled with the client connection"
    assert seen[1].at - t0 < 5
    # Only the connection that asks for /metrics is left.
    assert sm.metrics().sum("sidemux_connections_active", listener="client") == 1


# --------------------------------------------------------------------------
# 14.5 Memory bounded per client connection


def open_downloads(port, pb2, count, mib):
    """A raw HTTP/2 connection with `count` Download streams; it never reads again."""
    c = H2Client(port, timeout=10)
    c.wait_settings()
    body = grpc_frame(pb2.DownloadRequest(mib=mib, chunk_bytes=64 * 1024).SerializeToString())
    for _ in range(count):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, request_headers(port, "/sidemuxtest.Echo/Download"))
        c.conn.send_data(sid, body, end_stream=True)
    c.flush()
    return c


def test_clients_that_never_read_hold_bounded_memory(gen, echo, sidemux_factory):
    pb2, pb2_grpc = gen[0], gen[1]
    sm = sidemux_factory(one_member_config(echo.address))
    wait_members_up(sm, ["s1"], 10.0)
    ch = channel(sm.port)
    stub = pb2_grpc.EchoStub(ch)
    try:
        # Warm up: the member connection, one download, one unary call.
        assert sum(len(c.data) for c in stub.Download(pb2.DownloadRequest(mib=1), timeout=10)) == MIB
        stub.Unary(pb2.Msg(text="warm"), timeout=10)
        base = vm_hwm_mib(sm.pid)
        clients = [open_downloads(sm.port, pb2, 200, 4) for _ in range(2)]
        try:
            # Until the bytes sidemux takes from the member stop growing.
            last, still = -1, 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and still < 3:
                got = sm.metrics().sum("sidemux_bytes_total", side="upstream", direction="in")
                still = still + 1 if got == last else 0
                last = got
                time.sleep(0.5)
            grown = vm_hwm_mib(sm.pid) - base
            print(f"peak RSS {base:.1f} MiB -> +{grown:.1f} MiB with 2 x 200 unread downloads")
            assert grown < 24, f"peak RSS grew {grown:.1f} MiB for 2 x 200 streams nobody reads"
            t0 = time.monotonic()
            reply = stub.Unary(pb2.Msg(text="still serving"), timeout=5)
            assert reply.text == "still serving"
            assert time.monotonic() - t0 < 5
        finally:
            for c in clients:
                c.close()
    finally:
        ch.close()


# --------------------------------------------------------------------------
# 14.7 host without :authority; deadline mid-message; TLS handshake counted once


class RawMember(H2TestMember):
    """A raw HTTP/2 member that records each call's header list. It answers
    health checks SERVING and every other call either OK (`stream` False) or
    with response headers and then gRPC messages of 509 bytes as fast as flow
    control lets it, never ending the stream (it ignores grpc-timeout, so only
    sidemux's deadline ends the call). With `cut`, it answers a call with one
    message and half of the next, then closes the connection: a member that died
    in the middle of a message."""

    MESSAGE = grpc_frame(b"\xab" * 509)
    CUT = MESSAGE + MESSAGE[:200]

    def __init__(self, stream=False, cut=False):
        self.stream = stream
        self.cut = cut
        self.requests = []
        self.lock = threading.Lock()
        super().__init__()

    def _answer(self, conn, sid, headers, pending):
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        if dict(headers).get(":path") != "/grpc.health.v1.Health/Check":
            if self.stream:
                pending[sid] = self.MESSAGE * 40
                return
            if self.cut:
                conn.send_data(sid, self.CUT)
                raise ConnectionAbortedError  # the connection closes once this is sent
        conn.send_data(sid, b"\x00\x00\x00\x00\x02\x08\x01")  # SERVING / an empty-ish Msg
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)

    @staticmethod
    def _push(conn, pending):
        for sid in list(pending):
            try:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(pending[sid]))
            except Exception:
                pending.pop(sid)
                continue
            if n > 0:
                conn.send_data(sid, pending[sid][:n])
                pending[sid] = pending[sid][n:]

    def _serve(self, sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
        conn.initiate_connection()
        pending = {}  # stream id -> bytes still to send
        try:
            sock.sendall(conn.data_to_send())
            while not self.stopping:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        headers = list(ev.headers)
                        if dict(headers).get(":path") != "/grpc.health.v1.Health/Check":
                            with self.lock:
                                self.requests.append(headers)
                        try:
                            self._answer(conn, ev.stream_id, headers, pending)
                        except ConnectionAbortedError:
                            # A FIN after the bytes, then read until sidemux closes:
                            # closing with the request unread would send an RST,
                            # which may overtake the answer.
                            sock.sendall(conn.data_to_send())
                            sock.shutdown(socket.SHUT_WR)
                            sock.settimeout(10)
                            while sock.recv(65536):
                                pass
                            return
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        pending.pop(ev.stream_id, None)
                self._push(conn, pending)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except Exception:
            return
        finally:
            sock.close()


def test_host_without_authority_becomes_authority(sidemux_factory):
    member = RawMember()
    try:
        sm = sidemux_factory(one_member_config(member.address))
        wait_members_up(sm, ["s1"], 10.0)
        with H2Client(sm.port, timeout=5) as c:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"),
                                      ("host", "etcd.example:2379"), ("content-type", "application/grpc"),
                                      ("te", "trailers")])
            c.conn.send_data(sid, grpc_frame(b""), end_stream=True)
            c.streams[sid] = StreamResult(sid)
            c.flush()
            st = c.wait([sid])[0]
        assert st.trailers and dict(st.trailers).get("grpc-status") == "0", (st.headers, st.trailers)
        with member.lock:
            got = member.requests[-1]
        names = [k for k, _ in got]
        assert dict(got).get(":authority") == "etcd.example:2379", got
        assert "host" not in names, got
        first_regular = next(i for i, k in enumerate(names) if not k.startswith(":"))
        assert names.index(":authority") < first_regular, f"pseudo-header after regular ones: {names}"
    finally:
        member.close()


def whole_messages(data):
    """Number of gRPC messages in data, or None if it ends inside one."""
    pos = count = 0
    while pos < len(data):
        if pos + 5 > len(data):
            return None
        pos += 5 + int.from_bytes(data[pos + 1:pos + 5], "big")
        if pos > len(data):
            return None
        count += 1
    return count


def test_deadline_after_headers_ends_after_a_whole_message(sidemux_factory):
    """The client's stream window (1000 bytes) stops the answer inside its second
    message when the 1 s deadline fires; the client must get the rest of that
    message, then DEADLINE_EXCEEDED in trailers."""
    member = RawMember(stream=True)
    try:
        sm = sidemux_factory(one_member_config(member.address))
        wait_members_up(sm, ["s1"], 10.0)
        with H2Client(sm.port, timeout=10) as c:
            c.wait_settings()
            # (python h2 leaves settings given before initiate_connection out of the preface.)
            c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
            c.flush()
            deadline = time.monotonic() + 5
            while c.conn.local_settings.initial_window_size != 1000:  # until sidemux acknowledged it
                assert c.pump(deadline), "connection closed before the SETTINGS ACK"
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, request_headers(sm.port, "/a.B/Stream", [("grpc-timeout", "1S")]))
            c.conn.send_data(sid, grpc_frame(b""), end_stream=True)
            c.streams[sid] = StreamResult(sid)
            c.flush()
            time.sleep(1.8)  # past the deadline, reading nothing (the window stays at 1000 bytes)
            st = c.wait([sid])[0]
    finally:
        member.close()
    assert st.status == 200, st.headers
    assert st.reset is None, f"stream reset ({st.reset}) instead of ending with a status"
    assert st.trailers is not None, "no trailers"
    assert dict(st.trailers).get("grpc-status") == "4", st.trailers
    assert len(st.data) >= 1000, "the deadline did not fire in the middle of the answer"
    assert whole_messages(bytes(st.data)) is not None, \
        f"the answer ends inside a message ({len(st.data)} bytes) before the status"


def test_member_lost_in_the_middle_of_a_message_ends_with_unavailable(gen, sidemux_factory):
    """A member connection that closes inside a response message: the client gets
    the part that came, then grpc-status 14 in trailers, not a reset (CANCEL reads
    as CANCELLED, on which etcd's client gives a Watch up), and grpcio reports
    UNAVAILABLE."""
    member = RawMember(cut=True)
    try:
        sm = sidemux_factory(one_member_config(member.address))
        wait_members_up(sm, ["s1"], 10.0)
        with H2Client(sm.port, timeout=10) as c:
            sid = c.grpc_request("/a.B/Stream", b"")
            st = c.wait([sid], timeout=10)[0]
        assert st.reset is None, f"stream reset ({st.reset}) instead of ending with a status"
        assert st.trailers is not None and dict(st.trailers).get("grpc-status") == "14", (st.headers, st.trailers)
        assert bytes(st.data) == RawMember.CUT, len(st.data)
        wait_members_up(sm, ["s1"], 10.0)
        # (A unary call would not do: grpcio waits out the deadline on a unary
        # answer that brings more than one message, whatever its status.)
        ch = channel(sm.port)
        got = []
        try:
            with pytest.raises(grpc.RpcError) as info:
                got.extend(ch.unary_stream("/a.B/Stream")(b"", timeout=10))
        finally:
            ch.close()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, (info.value.code(), info.value.details())
        assert got == [b"\xab" * 509], got
        with member.lock:
            assert len(member.requests) == 2, "a stream that reached the member was sent again"
    finally:
        member.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))


def test_failed_tls_handshake_counted_once(certs, sidemux_factory):
    cfg = base_config()
    cfg["listeners"].append({"name": "tls", "address": f"{HOST}:0", "tls": listener_tls(certs.server)})
    sm = sidemux_factory(cfg)
    port = sm.port_of("tls")
    before = rejected(sm, "tls_handshake", listener="tls")
    sock = connect(port)
    try:
        # A record header OpenSSL rejects, then more bytes in the same segment.
        sock.sendall(b"\x16\x03\x01\xff\xff" + b"\xee" * 95)
        waited, _ = wait_closed(sock, timeout=5)
    finally:
        sock.close()
    assert waited is not None, "a failed handshake left the connection open"
    deadline = time.monotonic() + 2
    while rejected(sm, "tls_handshake", listener="tls") == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rejected(sm, "tls_handshake", listener="tls") == before + 1, \
        sm.metrics().series("sidemux_connections_rejected_total")

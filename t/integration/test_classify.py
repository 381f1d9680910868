"""Classification of new connections: byte-at-a-time, timeouts, limits, TLS on plaintext."""

import selectors
import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import pytest

from conftest import (HOST, H2_PREFACE, H2Client, ResponseReader, base_config, build_request, client_hello,
                      connect, parse_metrics, raise_nofile, read_until_close, send_bytes, wait_http_ok)


def send_one_byte_at_a_time(sock, data, paced=0):
    """Each byte in its own send (TCP_NODELAY is set): the first `paced` bytes 1 ms apart so
    they reach the server in separate reads; this is pacing, not synchronisation."""
    for i in range(len(data)):
        try:
            sock.send(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return False  # the server answered (and closed) before the end
        if i < paced:
            time.sleep(0.001)
    return True


def test_h2_preface_one_byte_at_a_time(sidemux):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/livez"),
                          (":authority", f"{HOST}:{sidemux.port}")], end_stream=True)
    data = conn.data_to_send()
    assert data.startswith(H2_PREFACE)
    with connect(sidemux.port) as s:
        send_one_byte_at_a_time(s, data, paced=len(H2_PREFACE) + 9)
        status, body, ended = None, b"", False
        deadline = time.monotonic() + 10
        while not ended:
            assert time.monotonic() < deadline, "no HTTP/2 response"
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            assert chunk, "server closed the HTTP/2 connection"
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    assert status == "200"
    assert body.strip() == b"ok"
    m = sidemux.metrics()
    assert m.value("sidemux_connections_accepted_total", listener="client", protocol="h2", tls="false") == 1


@pytest.mark.parametrize("request_bytes,status", [
    (build_request("/livez"), 200),
    # shares its first byte with the HTTP/2 preface: the classifier must fall back to HTTP/1
    (build_request("/livez", "PUT", headers={"Content-Length": "0"}), 405),
    (build_request("/livez", "PRI", headers={"Content-Length": "0"}), None),
], ids=["GET", "PUT", "PRI-method"])
def test_http1_one_byte_at_a_time(sidemux, request_bytes, status):
    with connect(sidemux.port) as s:
        complete = send_one_byte_at_a_time(s, request_bytes, paced=30)
        if status is not None:
            assert complete, "server closed the connection while the request was being sent"
        if status is None:
            # "PRI /livez HTTP/1.1" is not the preface: HTTP/1 answers it (405 or 400), never hangs
            data, _ = read_until_close(s, timeout=5)
            assert data.startswith(b"HTTP/1.1 4"), data[:100]
        else:
            resp = ResponseReader(s).read_response()
            assert resp.status == status, resp
            if status == 200:
                assert resp.body.strip() == b"ok"
    if status is not None:
        m = sidemux.metrics()
        assert m.value("sidemux_connections_accepted_total", listener="client", protocol="http1",
                       tls="false") == 2


def test_classify_timeout_1000_idle_connections(sidemux_factory):
    n = 1000
    soft = raise_nofile(n + 1200)  # before starting sidemux, which inherits the limit
    if soft < n + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit too low ({soft}) for {n} connections")
    timeout = 0.5
    sm = sidemux_factory(base_config(limits={"classify_timeout": "500ms"}))
    sel = selectors.DefaultSelector()
    socks = []
    opened_at = {}
    closed_at = {}
    received = {}

    def poll(wait):
        for key, _ in sel.select(wait):
            s = key.fileobj
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""
            except BlockingIOError:
                continue
            if chunk:
                received[s] = received.get(s, b"") + chunk
                continue
            closed_at[s] = time.monotonic()
            sel.unregister(s)

    try:
        for i in range(n):
            s = socket.create_connection((HOST, sm.port), timeout=5)
            opened_at[s] = time.monotonic()
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
            if i % 50 == 49:
                poll(0)
        last_open = time.monotonic()
        deadline = last_open + timeout + 10
        while len(closed_at) < n and time.monotonic() < deadline:
            poll(max(0.0, min(0.5, deadline - time.monotonic())))
        assert len(closed_at) == n, f"{n - len(closed_at)} of {n} idle connections still open " \
                                    f"{timeout + 10:.1f}s after the last one opened"
        early = [closed_at[s] - opened_at[s] for s in socks if closed_at[s] - opened_at[s] < timeout - 0.05]
        assert not early, f"{len(early)} connections closed before classify_timeout, e.g. {early[:3]}"
        assert not received, f"server sent bytes to unclassified connections: {list(received.values())[:1]}"
    finally:
        sel.close()
        for s in socks:
            s.close()
    m = sm.metrics()
    assert m.value("sidemux_connections_rejected_total", listener="client", reason="classify_timeout") == n
    # unclassified connections are not "accepted" with a protocol; only this scrape is
    assert m.sum("sidemux_connections_accepted_total") <= 1
    assert sm.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_max_connections(sidemux_factory, workers):
    sm = sidemux_factory(base_config(workers=workers, limits={"max_connections": 5}))
    conns = []
    try:
        for _ in range(5):
            s = connect(sm.port)
            s.sendall(build_request("/livez"))
            r = ResponseReader(s)
            assert r.read_response().status == 200
            conns.append((s, r))
        sixth = connect(sm.port)
        t0 = time.monotonic()
        data, closed = read_until_close(sixth, timeout=3)
        sixth.close()
        assert closed is not None, "6th concurrent connection was not closed"
        assert data == b"", f"6th connection got bytes: {data[:100]!r}"
        assert time.monotonic() - t0 < 1.0, "6th connection not closed at once"
        # scrape over a connection that is already open
        s, r = conns[0]
        s.sendall(build_request("/metrics"))
        resp = r.read_response()
        assert resp.status == 200
        m = parse_metrics(resp.body.decode())
        assert m.value("sidemux_connections_rejected_total", listener="client", reason="limit") == 1
        assert m.value("sidemux_connections_active", listener="client", protocol="http1", tls="false") == 5
        # closing one frees a slot
        conns.pop()[0].close()
        resp = wait_http_ok(sm.port, timeout=5)
        assert getattr(resp, "status", None) == 200, f"no slot freed after a close: {resp!r}"
    finally:
        for s, _ in conns:
            s.close()
    assert sm.stop() == 0


def test_tls_client_hello_on_plaintext_listener(sidemux):
    with connect(sidemux.port) as s:
        send_bytes(s, client_hello())
        data, closed = read_until_close(s, timeout=5)
        assert closed is not None, "TLS ClientHello on a plaintext listener left open"
        assert not data.startswith(b"HTTP/"), data[:100]
    with connect(sidemux.port) as s:
        send_bytes(s, b"\x16\x03\x01\x00")  # a record header alone, first byte 0x16
        _, closed = read_until_close(s, timeout=5)
        assert closed is not None
    m = sidemux.metrics()
    assert m.value("sidemux_connections_rejected_total", listener="client", reason="tls_handshake") == 2
    assert m.sum("sidemux_connections_accepted_total", tls="true") == 0
    assert sidemux.get("/livez").status == 200
    assert sidemux.stop() == 0


def test_real_tls_client_fails_cleanly(sidemux):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with connect(sidemux.port) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.do_handshake()
    assert sidemux.get("/livez").status == 200


def test_accepted_and_active_by_protocol(sidemux):
    http1 = []
    h2c = []
    try:
        for _ in range(2):
            s = connect(sidemux.port)
            s.sendall(build_request("/livez"))
            assert ResponseReader(s).read_response().status == 200
            http1.append(s)
        for _ in range(3):
            c = H2Client(sidemux.port)
            assert c.get("/livez").status == 200
            h2c.append(c)
        m = sidemux.metrics()
        lbl = dict(listener="client", tls="false")
        assert m.value("sidemux_connections_accepted_total", protocol="http1", **lbl) == 3  # + this scrape
        assert m.value("sidemux_connections_accepted_total", protocol="h2", **lbl) == 3
        assert m.value("sidemux_connections_active", protocol="http1", **lbl) == 3
        assert m.value("sidemux_connections_active", protocol="h2", **lbl) == 3
    finally:
        for s in http1:
            s.close()
        for c in h2c:
            c.close()
    deadline = time.monotonic() + 5
    while True:
        m = sidemux.metrics()
        active_h2 = m.value("sidemux_connections_active", listener="client", protocol="h2", tls="false")
        active_h1 = m.value("sidemux_connections_active", listener="client", protocol="http1", tls="false")
        if active_h2 == 0 and active_h1 == 1:
            break
        assert time.monotonic() < deadline, f"active h2={active_h2} http1={active_h1} 5 s after closing"
        time.sleep(0.02)

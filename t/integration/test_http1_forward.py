"""HTTP/1 forwarding (cluster.http1_forward): etcd's grpc-gateway through sidemux.

Against a real 3-member etcd cluster: gateway put / range (also /v3beta/) /
deleterange / txn, a 1 MiB value both ways, a streaming /v3/watch across a
silence longer than idle_timeout, gateway and local requests pipelined on one
connection, a slow reader of a large range answer (sidemux's RSS stays
bounded), kind grpc keeps /v3/* a 404, no reachable member is a JSON 503.
Against a small Python member (HTTP/1 for forwarded requests, HTTP/2 for the
health checks): X-Forwarded-For and hop-by-hop headers, a websocket upgrade
tunnelled both ways, retry of a request whose connect failed.
"""

import base64
import json
import os
import select
import socket
import threading
import time

import pytest
import yaml

from conftest import (HOST, ResponseReader, Sidemux, build_request, connect, http_request, read_until_close,
                      rss_kib, sanitizer_report, sidemux_binary, wait_members_up)
from etcd_cluster import start_cluster
from h2_member import H2TestMember
from test_reload import reload

READY_TIMEOUT = 15.0
IDLE_TIMEOUT_S = 2  # limits.idle_timeout of the etcd-facing sidemux


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def unb64(s):
    return base64.b64decode(s)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with start_cluster(tmp_path_factory) as c:
        yield c


def stop_checked(proc):
    """Stop a sidemux this file started; an ASan/LSan report in its stderr fails the test."""
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
    report = sanitizer_report(proc.raw_lines())
    assert not report, report


@pytest.fixture(scope="module")
def sm(cluster, tmp_path_factory):
    config = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": 2,
        "cluster": {
            "name": "etcd",
            "kind": "etcd",
            "members": [{"name": m.name, "address": m.endpoint} for m in cluster.members],
        },
        "limits": {"idle_timeout": f"{IDLE_TIMEOUT_S}s"},
        "log": {"level": "info", "format": "json", "access_log": True},
    }
    proc = Sidemux(sidemux_binary(), tmp_path_factory.mktemp("sidemux"), config, name="sidemux-gw")
    # In the ASan tree freed memory waits in a quarantine (256 MB by default)
    # that RSS counts: capped here, the slow-reader test's RSS bound measures
    # sidemux's buffers, not ASan's; 4 MB still catches a use after free.
    saved = os.environ.get("ASAN_OPTIONS")
    if saved is not None:
        os.environ["ASAN_OPTIONS"] = saved + ":quarantine_size_mb=4"
    try:
        proc.start()
        if saved is not None:
            os.environ["ASAN_OPTIONS"] = saved
        wait_members_up(proc, cluster.names, READY_TIMEOUT)
        yield proc
    finally:
        if saved is not None:
            os.environ["ASAN_OPTIONS"] = saved
        stop_checked(proc)


def post(sm, path, obj, timeout=15.0):
    body = json.dumps(obj).encode()
    resp = http_request(sm.port, path, "POST", {"Content-Type": "application/json"}, body, timeout=timeout)
    return resp


def post_ok(sm, path, obj):
    resp = post(sm, path, obj)
    assert resp.status == 200, f"{path} -> {resp!r}\n" + "\n".join(sm.raw_lines()[-20:])
    return resp.json()


# --------------------------------------------------------------------------
# etcd's gateway


def test_gateway_put_range_deleterange_txn(sm, cluster):
    post_ok(sm, "/v3/kv/put", {"key": b64("gw/a"), "value": b64("one")})
    got = post_ok(sm, "/v3/kv/range", {"key": b64("gw/a")})
    assert [unb64(kv["value"]) for kv in got["kvs"]] == [b"one"]
    # The same through the deprecated prefix etcd 3.4 still serves.
    got = post_ok(sm, "/v3beta/kv/range", {"key": b64("gw/a")})
    assert [unb64(kv["value"]) for kv in got["kvs"]] == [b"one"]
    # Straight from a member: the put really happened.
    direct = cluster.etcdctl("get", "gw/a", "--print-value-only")
    assert direct.ok and direct.stdout.strip() == "one", direct

    txn = post_ok(sm, "/v3/kv/txn", {
        "compare": [{"key": b64("gw/a"), "target": "VALUE", "result": "EQUAL", "value": b64("one")}],
        "success": [{"request_put": {"key": b64("gw/a"), "value": b64("two")}}],
        "failure": [],
    })
    assert txn.get("succeeded") is True, txn
    got = post_ok(sm, "/v3/kv/range", {"key": b64("gw/a")})
    assert unb64(got["kvs"][0]["value"]) == b"two"

    deleted = post_ok(sm, "/v3/kv/deleterange", {"key": b64("gw/a")})
    assert deleted.get("deleted") == "1", deleted
    got = post_ok(sm, "/v3/kv/range", {"key": b64("gw/a")})
    assert "kvs" not in got

    # One access line per request, and the counter by member and status.
    line = sm.wait_log(lambda e: e.get("msg") == "access" and e.get("proto") == "http1"
                       and e.get("path") == "/v3/kv/deleterange", timeout=5)
    assert line and line["status"] == 200 and line["member"] in cluster.names, line
    m = sm.metrics()
    assert sum(m.sum("sidemux_upstream_http_requests_total", member=n, code="200") for n in cluster.names) >= 7


def test_gateway_one_mib_value_both_ways(sm):
    value = bytes(range(256)) * 4096  # 1 MiB
    body = json.dumps({"key": b64("gw/big"), "value": b64(value)}).encode()
    # The request goes chunked, in pieces: sidemux re-frames it for the member.
    with connect(sm.port) as s:
        head = (f"POST /v3/kv/put HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        s.sendall(head)
        for i in range(0, len(body), 100_000):
            piece = body[i:i + 100_000]
            s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        resp = ResponseReader(s, 20).read_response()
    assert resp.status == 200, resp
    got = post_ok(sm, "/v3/kv/range", {"key": b64("gw/big")})
    assert unb64(got["kvs"][0]["value"]) == value


class ChunkStream:
    """Reads a chunked HTTP/1 response body as it arrives, split into JSON lines."""

    def __init__(self, sock):
        self.reader = ResponseReader(sock, 30)
        self.head = self.reader.read_response(head=True)
        self.pending = b""

    def next_object(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            size = int(self.reader._read_line(deadline).split(b";")[0], 16)
            assert size > 0, "the watch ended"
            self.pending += self.reader._read_exact(size, deadline)
            assert self.reader._read_line(deadline) == b""
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)


def test_gateway_watch_streams_across_idle_timeout(sm):
    with connect(sm.port, timeout=30) as s:
        create = json.dumps({"create_request": {"key": b64("w/"), "range_end": b64("w0")}}).encode()
        s.sendall(build_request("/v3/watch", "POST", {"Content-Type": "application/json"}, create))
        stream = ChunkStream(s)
        assert stream.head.status == 200, stream.head
        first = stream.next_object(10)
        assert first["result"].get("created") is True, first

        def events(n):
            seen = []
            while len(seen) < n:
                obj = stream.next_object(10)
                for ev in obj["result"].get("events", []):
                    seen.append(unb64(ev["kv"]["value"]).decode())
            return seen

        for i in range(20):
            post_ok(sm, "/v3/kv/put", {"key": b64(f"w/{i}"), "value": b64(f"v{i}")})
        assert events(20) == [f"v{i}" for i in range(20)]

        # A silence longer than idle_timeout: the request is in flight, so
        # the client connection stays (what is measured here is the timeout).
        time.sleep(IDLE_TIMEOUT_S + 1.5)
        post_ok(sm, "/v3/kv/put", {"key": b64("w/late"), "value": b64("late")})
        assert events(1) == ["late"]


def test_pipelined_gateway_and_local_answered_in_order(sm):
    put = json.dumps({"key": b64("pipe/k"), "value": b64("pv")}).encode()
    rng = json.dumps({"key": b64("pipe/k")}).encode()
    batch = (build_request("/v3/kv/put", "POST", {"Content-Type": "application/json"}, put)
             + build_request("/livez")
             + build_request("/v3/kv/range", "POST", {"Content-Type": "application/json"}, rng)
             + build_request("/version")
             + build_request("/v3/kv/range", "POST", {"Content-Type": "application/json"}, rng))
    with connect(sm.port) as s:
        s.sendall(batch)
        r = ResponseReader(s, 15)
        answers = [r.read_response() for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5, answers
    assert "header" in answers[0].json()
    assert answers[1].body == b"ok\n" or answers[1].body.strip() == b"ok"
    assert unb64(answers[2].json()["kvs"][0]["value"]) == b"pv"
    assert "sidemux" in answers[3].json()
    assert unb64(answers[4].json()["kvs"][0]["value"]) == b"pv"


def test_slow_reader_of_large_range_keeps_rss_bounded(sm):
    value = b"x" * (1 << 20)
    for i in range(12):
        post_ok(sm, "/v3/kv/put", {"key": b64(f"big/{i:02d}"), "value": b64(value)})
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    s.settimeout(30)
    s.connect((HOST, sm.port))
    with s:
        before = rss_kib(sm.pid)
        rng = json.dumps({"key": b64("big/"), "range_end": b64("big0")}).encode()
        s.sendall(build_request("/v3/kv/range", "POST", {"Content-Type": "application/json"}, rng))
        # The answer is about 16 MiB of JSON. The client takes nothing for a
        # while (less than idle_timeout, after which a client that does not
        # read is closed), then reads it slowly. Without backpressure sidemux
        # would hold all of it.
        peak = before
        deadline = time.monotonic() + IDLE_TIMEOUT_S * 0.6
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(sm.pid))
            time.sleep(0.05)
        raw = bytearray()
        end = time.monotonic() + 60
        while not raw.endswith(b"\r\n0\r\n\r\n"):
            assert time.monotonic() < end, f"read {len(raw)} bytes in 60 s"
            chunk = s.recv(256 << 10)
            assert chunk, "connection closed mid-answer"
            raw += chunk
            peak = max(peak, rss_kib(sm.pid))
            time.sleep(0.002)
    print(f"sidemux RSS growth while a slow client read {len(raw)} bytes: {peak - before} KiB")
    assert len(raw) > 16 << 20
    head, _, _ = bytes(raw[:200]).partition(b"\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert peak - before < 6 * 1024, f"RSS grew {peak - before} KiB while the client read slowly"


def test_v3_is_404_with_kind_grpc(cluster, tmp_path):
    config = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "cluster": {"members": [{"name": m.name, "address": m.endpoint} for m in cluster.members]},
    }
    proc = Sidemux(sidemux_binary(), tmp_path, config, name="sidemux-grpc")
    try:
        proc.start()
        resp = http_request(proc.port, "/v3/kv/range", "POST", {"Content-Type": "application/json"},
                            json.dumps({"key": b64("a")}).encode())
        assert resp.status == 404, resp
    finally:
        stop_checked(proc)


def test_no_reachable_member_is_json_503_fast(tmp_path):
    dead = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind((HOST, 0))
            dead.append(s.getsockname()[1])
    config = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "cluster": {"kind": "etcd", "members": [{"name": f"d{i}", "address": f"{HOST}:{p}"}
                                                for i, p in enumerate(dead)]},
    }
    proc = Sidemux(sidemux_binary(), tmp_path, config, name="sidemux-dead")
    try:
        proc.start()
        t0 = time.monotonic()
        resp = http_request(proc.port, "/v3/kv/range", "POST", {"Content-Type": "application/json"},
                            json.dumps({"key": b64("a")}).encode(), timeout=10)
        elapsed = time.monotonic() - t0
        assert resp.status == 503, resp
        assert resp.header("content-type") == "application/json"
        body = resp.json()
        assert body["code"] == 14 and body["error"], body
        assert elapsed < 3.0, f"503 took {elapsed:.2f}s"
    finally:
        stop_checked(proc)


# --------------------------------------------------------------------------
# A small member: HTTP/2 health checks, HTTP/1 for what sidemux forwards


class Http1Member(H2TestMember):
    """Answers grpc.health.v1 checks SERVING over HTTP/2; over HTTP/1 it echoes
    the request head it received as JSON, or after a websocket upgrade
    request answers 101 and echoes every byte."""

    reuse_address = True

    def __init__(self):
        self.heads = []
        self.lock = threading.Lock()
        super().__init__()

    def stop_listening(self):
        """New connections are refused; open ones stay."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _serve(self, sock):
        try:
            first = b""
            while len(first) < 24 and not first.startswith(b"POST") and not first.startswith(b"GET"):
                chunk = sock.recv(24 - len(first))
                if not chunk:
                    return
                first += chunk
            if first.startswith(b"PRI "):
                self._serve_h2(sock, first)
            else:
                self._serve_http1(sock, first)
        except OSError:
            pass

    def _serve_h2(self, sock, first):
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        data = first
        while not self.stopping:
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    sid = ev.stream_id
                    message = self._health_answer()
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    conn.send_data(sid, b"\x00" + len(message).to_bytes(4, "big") + message)
                    conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            data = sock.recv(65536)
            if not data:
                return

    def _serve_http1(self, sock, buf):
        while not self.stopping:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:]]
            with self.lock:
                self.heads.append((lines[0], headers))
            names = {k.lower(): v for k, v in headers}
            if names.get("upgrade", "").lower() == "websocket":
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n\r\n")
                if buf:
                    sock.sendall(buf)
                while True:
                    data = sock.recv(65536)
                    if not data:
                        return
                    sock.sendall(data)
            received = b""
            if names.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

            def more():
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("peer closed mid-request")  # ends _serve
                return chunk

            if names.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    while b"\r\n" not in buf:
                        buf += more()
                    size_line, _, buf = buf.partition(b"\r\n")
                    size = int(size_line, 16)
                    while len(buf) < size + 2:
                        buf += more()
                    assert buf[size:size + 2] == b"\r\n" or size == 0, "bad chunk framing"
                    received += buf[:size]
                    buf = buf[size + 2:]
                    if size == 0:
                        break
            else:
                length = int(names.get("content-length", "0"))
                while len(buf) < length:
                    buf += more()
                received, buf = buf[:length], buf[length:]
            status, body = self._http1_answer(lines[0], headers, received)
            sock.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _health_answer(self):
        """The message answering every HTTP/2 request: grpc.health.v1's SERVING."""
        return b"\x08\x01"

    def _http1_answer(self, line, headers, received):
        """Status line's rest and JSON body for an HTTP/1 request: its echo."""
        return b"200 OK", json.dumps({"line": line, "headers": headers, "body_len": len(received),
                                      "body_sum": sum(received) % 65521}).encode()


class BreakingHttp1Member(Http1Member):
    """Healthy over HTTP/2 (its checks pass), but every HTTP/1 request it takes
    is cut short: it reads the head and hangs up without an answer."""

    def _serve_http1(self, sock, buf):
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
        with self.lock:
            self.heads.append((buf.split(b"\r\n", 1)[0].decode("latin-1"), []))
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def members():
    ms = [Http1Member(), Http1Member()]
    yield ms
    for m in ms:
        m.close()


def start_front(tmp_path, members, limits=None, workers=None, **cluster):
    config = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "cluster": {
            "members": [{"name": f"p{i}", "address": m.address} for i, m in enumerate(members)],
            "http1_forward": ["/echo/", "/ws/"],
            "health_check": {"interval": "30s"},
            **cluster,
        },
        "log": {"level": "info", "format": "json", "access_log": True},
    }
    if limits:
        config["limits"] = limits
    if workers:
        config["workers"] = workers
    proc = Sidemux(sidemux_binary(), tmp_path, config, name="sidemux-front")
    proc.start()
    wait_members_up(proc, [f"p{i}" for i in range(len(members))], READY_TIMEOUT)
    return proc


def test_headers_rewritten_and_forwarded_for_appended(tmp_path, members):
    proc = start_front(tmp_path, members[:1])
    try:
        resp = http_request(proc.port, "/echo/x?q=1", "GET", {
            "Host": "etcd.example:2379",
            "Authorization": "Bearer t0ken",
            "X-Forwarded-For": "10.1.2.3",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "TE": "trailers",
            "Connection": "close, X-Hop",
            "X-Hop": "drop me",
            "X-Kept": "yes",
        })
        assert resp.status == 200, resp
        seen = resp.json()
        got = {k.lower(): v for k, v in seen["headers"]}
        assert seen["line"] == "GET /echo/x?q=1 HTTP/1.1"
        assert got["host"] == "etcd.example:2379"
        assert got["authorization"] == "Bearer t0ken"
        assert got["x-forwarded-for"] == f"10.1.2.3, {HOST}"
        assert got["x-kept"] == "yes"
        for gone in ("keep-alive", "proxy-authorization", "te", "connection", "x-hop"):
            assert gone not in got, (gone, got)
        # Not a forwarded prefix: still sidemux's own 404.
        assert http_request(proc.port, "/other").status == 404
    finally:
        stop_checked(proc)


def test_websocket_upgrade_tunnelled(tmp_path, members):
    proc = start_front(tmp_path, members[:1])
    try:
        with connect(proc.port, timeout=10) as s:
            s.sendall(build_request("/ws/chat", "GET", {
                "Connection": "Upgrade", "Upgrade": "websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}))
            r = ResponseReader(s, 10)
            head = r.read_response(head=True)
            assert head.status == 101, head
            assert head.header("upgrade").lower() == "websocket"
            payload = bytes(range(256)) * 1024  # 256 KiB each way
            got = bytearray(r.buf)
            sent = 0
            deadline = time.monotonic() + 20
            while len(got) < len(payload):
                assert time.monotonic() < deadline, f"echoed {len(got)} of {len(payload)}"
                w = [s] if sent < len(payload) else []
                rd, wr, _ = select.select([s], w, [], 1.0)
                if wr:
                    sent += s.send(payload[sent:sent + 65536])
                if rd:
                    chunk = s.recv(65536)
                    assert chunk, "tunnel closed"
                    got += chunk
            assert bytes(got) == payload
        heads = members[0].heads
        up = {k.lower(): v for k, v in heads[-1][1]}
        assert up.get("upgrade") == "websocket" and up.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    finally:
        stop_checked(proc)


def test_stalled_request_body_times_out(tmp_path, members):
    """A forwarded body that stops coming while the member could take more
    (10 of 1,000 bytes, then nothing) is cut after idle_timeout of silence:
    it holds neither a connection slot nor a member connection for ever."""
    proc = start_front(tmp_path, members[:1], limits={"idle_timeout": "1s", "keepalive_interval": "1s"})
    try:
        with connect(proc.port, timeout=10) as s:
            s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
            t0 = time.monotonic()
            _, how = read_until_close(s, timeout=6)
            waited = time.monotonic() - t0
        assert how is not None, "a forwarded request whose body stalled held its connection 6 s (idle_timeout 1s)"
        assert waited >= 0.8, f"closed {waited:.2f}s after the body stalled, before idle_timeout (1s)"
    finally:
        stop_checked(proc)


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_100_continue_only_to_http11_clients(tmp_path, members, version):
    """The member's 100 Continue reaches an HTTP/1.1 client that asked for it;
    an HTTP/1.0 client gets no 1xx (RFC 9110 15.2), only the answer."""
    proc = start_front(tmp_path, members[:1])
    try:
        with connect(proc.port, timeout=10) as s:
            s.sendall(f"POST /echo/x HTTP/{version}\r\nHost: x\r\nExpect: 100-continue\r\n"
                      "Connection: close\r\nContent-Length: 2\r\n\r\n{}".encode())
            data, how = read_until_close(s, timeout=5)
        assert how is not None, f"no close after the answer: {data[:200]!r}"
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        if version == "1.1":
            assert data.startswith(interim + b"HTTP/1.1 200 "), data[:200]
        else:
            assert data.startswith(b"HTTP/1.1 200 "), data[:200]
            assert interim not in data, data[:200]
    finally:
        stop_checked(proc)


def test_member_breaking_every_answer_is_ejected(tmp_path):
    """A member that accepts each connection and then breaks the answer
    fails again and again: the reconnect before each request must not clear
    its count, so outlier ejection takes it out."""
    bad, good = BreakingHttp1Member(), Http1Member()
    # One worker: ejection is each worker's own verdict.
    proc = start_front(tmp_path, [bad, good], workers=1, balance="round_robin",
                       outlier={"consecutive_failures": 2, "ejection_time": "30s"})
    try:
        statuses = [http_request(proc.port, f"/echo/{i}").status for i in range(8)]
        assert 502 in statuses, statuses
        line = proc.wait_log(lambda e: e.get("msg") == "member ejected", timeout=3)
        assert line and line.get("member") == "p0", (statuses, line)
        # Ejected: the rest of the requests go to the good member.
        assert [http_request(proc.port, f"/echo/after{i}").status for i in range(4)] == [200] * 4
    finally:
        stop_checked(proc)
        bad.close()
        good.close()


def test_tunnel_through_removed_member_ends_at_drain_timeout(tmp_path, members):
    """A reload removes the member a websocket tunnel runs through: the
    tunnel goes on for drain_timeout, then its member connection (and so the
    client's) is closed, as the SPEC bounds removed members' streams."""
    proc = start_front(tmp_path, members[:1], limits={"drain_timeout": "1s"})
    try:
        with connect(proc.port, timeout=10) as s:
            s.sendall(build_request("/ws/chat", "GET", {
                "Connection": "Upgrade", "Upgrade": "websocket",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}))
            head = ResponseReader(s, 10).read_response(head=True)
            assert head.status == 101, head
            config = yaml.safe_load(proc.config_text)
            config["cluster"]["members"] = [{"name": "p1", "address": members[1].address}]
            reload(proc, config, 2)
            t0 = time.monotonic()
            s.sendall(b"still there")
            assert s.recv(64) == b"still there", "the tunnel ended at the reload, not at drain_timeout"
            _, how = read_until_close(s, timeout=5)
            waited = time.monotonic() - t0
        assert how is not None, "the tunnel through a removed member outlived drain_timeout (1s) by 5s"
        assert waited < 3, f"closed {waited:.2f}s after the reload (drain_timeout 1s)"
    finally:
        stop_checked(proc)


def test_connect_failure_retried_on_another_member(tmp_path, members):
    proc = start_front(tmp_path, members, balance="round_robin", retry={"attempts": 2})
    try:
        members[0].stop_listening()  # health stays up over the open HTTP/2 connection
        for i in range(4):
            resp = http_request(proc.port, f"/echo/{i}")
            assert resp.status == 200, resp
        assert len(members[1].heads) == 4 and not members[0].heads
        m = proc.metrics()
        assert m.sum("sidemux_upstream_retries_total", member="p0", reason="connect_failure") >= 1
    finally:
        stop_checked(proc)


def test_chunked_request_paused_and_resumed_arrives_whole(tmp_path, members):
    proc = start_front(tmp_path, members[:1])
    try:
        body = bytes(range(256)) * 4096
        with connect(proc.port) as s:
            s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 100_000):
                piece = body[i:i + 100_000]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            resp = ResponseReader(s, 20).read_response()
        assert resp.status == 200, resp
        seen = resp.json()
        assert (seen["body_len"], seen["body_sum"]) == (len(body), sum(body) % 65521)
    finally:
        stop_checked(proc)


def test_gateway_writes_go_to_the_leader(sm, cluster):
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        m = sm.metrics()
        leaders = [n for n in cluster.names if m.sum("sidemux_etcd_leader", member=n) >= 1]
        if len(leaders) == 1:
            break
        assert time.monotonic() < deadline, f"no single leader in sidemux_etcd_leader: {leaders}"
        time.sleep(0.1)
    since = len(sm.raw_lines())
    for i in range(6):
        post_ok(sm, "/v3/kv/put", {"key": b64(f"lead/{i}"), "value": b64("x")})
    post_ok(sm, "/v3/kv/range", {"key": b64("lead/0")})
    puts = sm.wait_lines(lambda e: e.get("msg") == "access" and e.get("proto") == "http1"
                         and e.get("path") == "/v3/kv/put", 6, since=since)
    assert len(puts) >= 6
    assert {e["member"] for e in puts[-6:]} == set(leaders), puts[-6:]


def test_client_leaving_a_watch_ends_it(sm):
    s = connect(sm.port, timeout=10)
    create = json.dumps({"create_request": {"key": b64("gone/")}}).encode()
    s.sendall(build_request("/v3/watch", "POST", {"Content-Type": "application/json", "X-Test": "leaving"}, create))
    stream = ChunkStream(s)
    assert stream.next_object(10)["result"].get("created") is True
    port = s.getsockname()[1]
    s.close()
    # The member's watch is not left open behind a client that went away.
    line = sm.wait_log(lambda e: e.get("msg") == "access" and e.get("path") == "/v3/watch"
                       and e.get("client", "").endswith(f":{port}"), timeout=5)
    assert line is not None, "no access line for the abandoned watch within 5 s"

"""gRPC forwarding: grpcio clients -> sidemux -> three sidemuxtest.Echo servers.

The test service (grpc_testsvc/) is compiled at test time into a temporary
directory. Each server runs as its own process, reports which server served a
call in every reply, and exposes its own counts and cancellation events through
GetStats, which the tests call on the servers directly (not through sidemux).
"""

import hashlib
import queue
import random
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter

import grpc
import pytest

import grpc_testsvc
from conftest import HOST, H2Client, Sidemux, dead_port, sidemux_binary, wait_members_up
from h2_member import H2TestMember

SERVER_NAMES = ("s1", "s2", "s3")
MIB = 1 << 20
WORKERS = 2
CONNECT_TIMEOUT_S = 2.0
RSS_LIMIT_MIB = 96


# --------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def gen():
    """(echo_pb2, echo_pb2_grpc, gen_dir), compiled once per module into a temp dir."""
    gen_dir = tempfile.mkdtemp(prefix="sidemuxtest-gen-")
    try:
        pb2, pb2_grpc = grpc_testsvc.generate(gen_dir)
        yield pb2, pb2_grpc, gen_dir
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)


def start_servers(gen_dir, names=SERVER_NAMES):
    servers = []
    try:
        for name in names:
            servers.append(grpc_testsvc.EchoServer(name, gen_dir).start())
    except Exception:
        for s in servers:
            s.stop()
        raise
    return servers


@pytest.fixture(scope="module")
def servers(gen):
    """Three echo servers s1..s3, stopped by PID at teardown."""
    started = start_servers(gen[2])
    yield {s.name: s for s in started}
    for s in started:
        s.stop()


def cluster_config(members, **cluster):
    cfg = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": WORKERS,
        "cluster": {
            "members": [{"name": name, "address": addr} for name, addr in members],
            "balance": "least_request",
            "connect_timeout": f"{int(CONNECT_TIMEOUT_S * 1000)}ms",
        },
        "log": {"level": "info", "access_log": True},
    }
    cfg["cluster"].update(cluster)
    return cfg


class SidemuxRunner:
    """Starts Sidemux instances in a directory and stops them all by PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.started = []

    def start(self, config, name=None, wait_members=None):
        sm = Sidemux(sidemux_binary(), self.workdir, config, name=name or f"sidemux{len(self.started)}")
        self.started.append(sm)
        sm.start()
        if wait_members:
            wait_members_up(sm, wait_members, 10.0)
        return sm

    def stop_all(self):
        for sm in self.started:
            sm.kill_if_running()


@pytest.fixture(scope="module")
def runner_mod(tmp_path_factory):
    r = SidemuxRunner(tmp_path_factory.mktemp("grpc-mod"))
    yield r
    r.stop_all()


@pytest.fixture
def runner(tmp_path):
    r = SidemuxRunner(tmp_path)
    yield r
    r.stop_all()


def members_of(servers, names=SERVER_NAMES):
    return [(n, servers[n].address) for n in names]


@pytest.fixture(scope="module")
def sm(runner_mod, servers):
    """One sidemux in front of s1..s3, shared by the tests that don't disturb it."""
    return runner_mod.start(cluster_config(members_of(servers)), name="shared", wait_members=SERVER_NAMES)


def channel(port, extra=()):
    """A grpcio channel with its own TCP connection (no subchannel sharing, no proxy)."""
    opts = list(grpc_testsvc.GRPC_MESSAGE_OPTIONS) + [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_http_proxy", 0),
    ] + list(extra)
    return grpc.insecure_channel(f"{HOST}:{port}", options=opts)


@pytest.fixture
def stub(gen, sm):
    ch = channel(sm.port)
    try:
        yield gen[1].EchoStub(ch)
    finally:
        ch.close()


def server_stats(gen, servers):
    """{name: Stats} fetched from each server directly."""
    out = {}
    for name, s in servers.items():
        ch = channel(s.port)
        try:
            out[name] = gen[1].EchoStub(ch).GetStats(gen[0].StatsRequest(), timeout=5)
        finally:
            ch.close()
    return out


def find_events(gen, servers, call_id, kind, timeout):
    """Poll the servers until one reports an event (call_id, kind). Returns (server, Event) or None."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        for name, st in server_stats(gen, servers).items():
            for ev in st.events:
                if ev.call_id == call_id and ev.kind == kind:
                    return name, ev
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return None


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc status")


def access_lines(sm):
    return [e for e in sm.log_lines() if e.get("msg") == "access"]


def wait_new_access(sm, since, predicate, timeout=5.0):
    """Wait for an access line, among those logged after the first `since` ones, that satisfies predicate."""
    deadline = time.monotonic() + timeout
    for _ in range(500):
        for e in access_lines(sm)[since:]:
            if predicate(e):
                return e
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return None


def wait_access_count(sm, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    for _ in range(500):
        lines = access_lines(sm)
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)
    return access_lines(sm)


def md_entries(metadata, keys):
    """[(key, value)] of the metadata whose key is in keys, in order."""
    return [(m.key, m.value) for m in metadata if m.key in keys]


# --------------------------------------------------------------------------
# Call shapes


def test_unary_round_trip(gen, stub, servers):
    pb2 = gen[0]
    payload = random.randbytes(4096)
    reply = stub.Unary(pb2.Msg(seq=7, payload=payload, text="h\u00e9llo"), timeout=10)
    assert reply.seq == 7 and reply.payload == payload and reply.text == "h\u00e9llo"
    assert reply.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert reply.server in servers, reply.server


def test_server_stream_1000_messages(gen, stub):
    pb2 = gen[0]
    got = list(stub.ServerStream(pb2.StreamRequest(count=1000, size=100), timeout=30))
    assert len(got) == 1000
    assert [m.seq for m in got] == list(range(1000))
    bad = [m.seq for m in got if m.payload != bytes([m.seq % 256]) * 100]
    assert not bad, f"payload mismatch in messages {bad[:10]}"
    assert len({m.server for m in got}) == 1, "one stream must stay on one member"


def test_client_stream(gen, stub):
    pb2 = gen[0]
    rnd = random.Random(1)
    payloads = [rnd.randbytes(rnd.randrange(0, 20000)) for _ in range(500)]
    summary = stub.ClientStream(iter([pb2.Msg(seq=i, payload=p) for i, p in enumerate(payloads)]), timeout=30)
    assert summary.count == 500
    assert summary.bytes == sum(len(p) for p in payloads)
    assert summary.sha256 == hashlib.sha256(b"".join(payloads)).hexdigest()


def test_bidi_ping_pong_200_rounds(gen, stub):
    pb2 = gen[0]
    requests = queue.Queue()

    def request_iter():
        while True:
            item = requests.get(timeout=30)
            if item is None:
                return
            yield item

    responses = stub.Bidi(request_iter(), timeout=60)
    servers_seen = set()
    try:
        for i in range(200):
            payload = f"ping {i}".encode() * (1 + i % 7)
            # the next ping goes out only after the previous pong came back
            requests.put(pb2.Msg(seq=i, payload=payload, text=f"r{i}"))
            pong = next(responses)
            assert (pong.seq, pong.payload, pong.text) == (i, payload, f"r{i}")
            servers_seen.add(pong.server)
        requests.put(None)  # half-close: the server ends the stream
        assert list(responses) == []
        assert responses.code() == grpc.StatusCode.OK
    finally:
        requests.put(None)
        responses.cancel()
    assert len(servers_seen) == 1


# --------------------------------------------------------------------------
# Metadata and status


def test_metadata_round_trip(gen, stub):
    pb2 = gen[0]
    request_md = [
        ("x-text", "hello world"),
        ("x-multi", "one"),
        ("x-multi", "two"),
        ("x-blob-bin", bytes(range(256))),
        ("x-short-bin", b"\x00"),
        ("x-pad-bin", b"\xff\xfe"),
    ]
    initial = [pb2.Meta(key="x-init", value=b"v1"), pb2.Meta(key="x-init-bin", value=b"\xff\x00\x80\x7f")]
    trailing = [pb2.Meta(key="x-trail", value=b"t-value"),
                pb2.Meta(key="x-trail-bin", value=bytes(range(255, -1, -1)))]
    reply, call = stub.Unary.with_call(
        pb2.Msg(seq=1, reply_initial=initial, reply_trailing=trailing), metadata=request_md, timeout=10)
    sent = [(k, v if isinstance(v, bytes) else v.encode()) for k, v in request_md]
    seen = md_entries(reply.received, {k for k, _ in request_md})
    assert seen == sent, f"the server saw {seen}, sent {sent}"
    init_back = [(m.key, m.value) for m in call.initial_metadata() if m.key.startswith("x-")]
    assert init_back == [("x-init", "v1"), ("x-init-bin", b"\xff\x00\x80\x7f")], call.initial_metadata()
    trail_back = [(m.key, m.value) for m in call.trailing_metadata() if m.key.startswith("x-")]
    assert trail_back == [("x-trail", "t-value"), ("x-trail-bin", bytes(range(255, -1, -1)))], \
        call.trailing_metadata()


@pytest.mark.parametrize("code,headers_first", [
    (grpc.StatusCode.NOT_FOUND, False),           # trailers-only from the member
    (grpc.StatusCode.RESOURCE_EXHAUSTED, True),   # headers, then trailers
    (grpc.StatusCode.UNAVAILABLE, False),         # the member's own UNAVAILABLE is not retried
])
def test_error_status_passes_through(gen, stub, servers, code, headers_first):
    pb2 = gen[0]
    message = f"thing 'k1' {code.name.lower()}: 100% sure, caf\u00e9 \u2603"
    trailing = [pb2.Meta(key="x-err-detail", value=b"detail text"),
                pb2.Meta(key="x-err-bin", value=b"\x00\x01\x02\xfd\xfe\xff")]
    before = server_stats(gen, servers)
    with pytest.raises(grpc.RpcError) as info:
        stub.Status(pb2.StatusRequest(code=code.value[0], message=message, trailing=trailing,
                                      send_headers_first=headers_first), timeout=10)
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    assert err.details() == message
    trail = [(m.key, m.value) for m in err.trailing_metadata() if m.key.startswith("x-")]
    assert trail == [("x-err-detail", "detail text"), ("x-err-bin", b"\x00\x01\x02\xfd\xfe\xff")], \
        err.trailing_metadata()
    if headers_first:
        init = [(m.key, m.value) for m in err.initial_metadata() if m.key.startswith("x-")]
        assert len(init) == 1 and init[0][0] == "x-status-server" and init[0][1] in servers, init
    after = server_stats(gen, servers)
    calls = sum(after[n].started.get("Status", 0) - before[n].started.get("Status", 0) for n in servers)
    assert calls == 1, f"the call reached {calls} servers (a stream that reached a member is never replayed)"


# --------------------------------------------------------------------------
# Sizes


def test_8mib_messages_both_ways(gen, stub):
    pb2 = gen[0]
    payload = random.randbytes(8 * MIB)
    reply = stub.Unary(pb2.Msg(seq=1, payload=payload), timeout=30)
    assert reply.payload_sha256 == hashlib.sha256(payload).hexdigest(), "request payload corrupted"
    assert len(reply.payload) == 8 * MIB and reply.payload == payload, "response payload corrupted"
    big = [pb2.Msg(seq=i, payload=payload) for i in range(2)]
    summary = stub.ClientStream(iter(big), timeout=30)
    assert summary.count == 2 and summary.bytes == 16 * MIB
    assert summary.sha256 == hashlib.sha256(payload + payload).hexdigest()
    got = list(stub.ServerStream(pb2.StreamRequest(count=2, size=8 * MIB), timeout=30))
    assert [len(m.payload) for m in got] == [8 * MIB, 8 * MIB]
    assert got[1].payload == b"\x01" * (8 * MIB)


# --------------------------------------------------------------------------
# Cancellation and deadlines


def test_client_cancel_reaches_server(gen, stub, servers, sm):
    pb2 = gen[0]
    call_id = f"cancel-{uuid.uuid4().hex[:8]}"
    logged = len(access_lines(sm))
    fut = stub.Slow.future(pb2.SlowRequest(ms=10000, call_id=call_id), timeout=30)
    started = find_events(gen, servers, call_id, "started", timeout=5)
    assert started, "the Slow call never reached a server"
    t_cancel = time.monotonic()
    assert fut.cancel()
    seen = find_events(gen, servers, call_id, "cancelled", timeout=3)
    assert seen, f"server {started[0]} never saw the cancellation of {call_id}"
    assert seen[0] == started[0]
    delay = seen[1].at - t_cancel
    assert delay < 1.0, f"server saw the cancellation {delay:.3f}s after the client cancelled"
    line = wait_new_access(sm, logged, lambda e: e.get("path") == "/sidemuxtest.Echo/Slow")
    assert line, "no access line for the cancelled call"
    assert line["grpc_status"] == "CANCELLED", line
    assert line["member"] == started[0], line


def test_deadline_200ms_on_2s_call(gen, stub, servers):
    pb2 = gen[0]
    call_id = f"deadline-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Slow(pb2.SlowRequest(ms=2000, call_id=call_id), timeout=0.2)
    elapsed = time.monotonic() - t0
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value
    assert elapsed < 1.0, f"DEADLINE_EXCEEDED after {elapsed:.3f}s"
    seen = find_events(gen, servers, call_id, "cancelled", timeout=3)
    assert seen, "the server never saw the call cancelled"
    assert seen[1].at - t0 < 1.0, f"server saw the cancellation {seen[1].at - t0:.3f}s after the call began"
    assert not find_events(gen, servers, call_id, "finished", timeout=0)


def test_grpc_timeout_enforced_by_sidemux(gen, sm, servers):
    """A raw HTTP/2 client with no deadline of its own: sidemux must end the stream itself."""
    pb2 = gen[0]
    call_id = f"h2deadline-{uuid.uuid4().hex[:8]}"
    msg = pb2.SlowRequest(ms=2000, call_id=call_id).SerializeToString()
    frame = b"\x00" + len(msg).to_bytes(4, "big") + msg
    logged = len(access_lines(sm))
    with H2Client(sm.port, timeout=5) as c:
        t0 = time.monotonic()
        sid = c.request("/sidemuxtest.Echo/Slow", "POST",
                        [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "200m")],
                        frame)
        st = c.wait([sid], timeout=3)[0]
        elapsed = time.monotonic() - t0
    fields = dict((st.headers or []) + (st.trailers or []))
    assert st.reset in (None, 0), f"stream reset with code {st.reset} instead of a status (events {st.events})"
    assert fields.get("grpc-status") == "4", f"headers {st.headers} trailers {st.trailers}"
    assert fields.get("grpc-message"), fields
    assert 0.19 <= elapsed < 1.0, f"DEADLINE_EXCEEDED after {elapsed:.3f}s"
    seen = find_events(gen, servers, call_id, "cancelled", timeout=3)
    assert seen, "sidemux did not cancel the member stream at the deadline"
    assert seen[1].at - t0 < 1.0, f"member stream cancelled {seen[1].at - t0:.3f}s after the request"
    line = wait_new_access(sm, logged, lambda e: e.get("path") == "/sidemuxtest.Echo/Slow")
    assert line and line["grpc_status"] == "DEADLINE_EXCEEDED" and line["member"] == seen[0], line


# --------------------------------------------------------------------------
# Balancing


def test_200_concurrent_calls_spread_over_members(gen, stub, servers):
    pb2 = gen[0]
    t0 = time.monotonic()
    futs = [stub.Slow.future(pb2.SlowRequest(ms=300, call_id=f"spread-{i}"), timeout=30) for i in range(200)]
    replies = [f.result() for f in futs]
    elapsed = time.monotonic() - t0
    counts = Counter(r.server for r in replies)
    print(f"spread: {dict(counts)} in {elapsed:.2f}s")
    assert sum(counts.values()) == 200
    assert set(counts) == set(servers), counts
    for name in servers:
        assert counts[name] > 20, f"{name} got {counts[name]} of 200 calls: {dict(counts)}"
    # 200 calls of 300 ms one after another would take a minute
    assert elapsed < 10, f"200 concurrent calls took {elapsed:.1f}s"


def test_round_robin_rotates_per_stream(gen, runner, servers):
    pb2 = gen[0]
    sm = runner.start(cluster_config(members_of(servers), balance="round_robin"), wait_members=SERVER_NAMES)
    ch = channel(sm.port)
    try:
        stub = gen[1].EchoStub(ch)
        order = [stub.Unary(pb2.Msg(seq=i), timeout=10).server for i in range(30)]
    finally:
        ch.close()
    assert len(set(order[:3])) == 3, order
    assert all(order[i] == order[i % 3] for i in range(30)), f"not a rotation: {order}"


def test_member_connection_window_outlives_many_short_streams(gen, runner, servers):
    """Unary answers usually arrive with their trailers, so the member's stream
    closes before the client has read the body. Those bytes must still reopen
    the member connection's 1 MiB window, or the connection stalls for good
    after about 1 MiB of answers (found by scripts/bench)."""
    pb2 = gen[0]
    sm = runner.start(cluster_config([("s1", servers["s1"].address)]), wait_members=["s1"])
    ch = channel(sm.port)
    payload = b"w" * 4096
    try:
        stub = gen[1].EchoStub(ch)
        # 800 x 4 KiB = 3.2 MiB of answers over one member connection.
        for i in range(800):
            assert stub.Unary(pb2.Msg(seq=i, payload=payload), timeout=5).seq == i
    finally:
        ch.close()


# --------------------------------------------------------------------------
# Fairness and backpressure


@pytest.mark.parametrize("pace", [0.0, 0.025], ids=["full_speed", "paced_reader"])
def test_ticker_not_starved_by_download(gen, runner, servers, pace):
    """One channel, one member: a 100 MiB download must not hold back a 100 ms ticker.

    full_speed: the download runs as fast as the client takes it.
    paced_reader: the client takes a 1 MiB message every 25 ms (~2.5 s), so
    the download stream sits at its flow-control limit most of the time.
    """
    pb2 = gen[0]
    sm = runner.start(cluster_config(members_of(servers, ["s1"])), wait_members=["s1"])
    ch = channel(sm.port)
    stub = gen[1].EchoStub(ch)
    ticks = []  # (seq, sent_at, received_at)
    first = threading.Event()
    ticker = stub.Ticker(pb2.TickerRequest(count=600, interval_ms=100), timeout=90)
    errors = []

    def read_ticks():
        try:
            for t in ticker:
                ticks.append((t.seq, t.sent_at, time.monotonic()))
                first.set()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                errors.append(e)
        finally:
            first.set()

    reader = threading.Thread(target=read_ticks, daemon=True)
    reader.start()
    try:
        assert first.wait(10) and ticks, f"no tick arrived: {errors}"
        dl_start = time.monotonic()
        total = chunks = 0
        for chunk in stub.Download(pb2.DownloadRequest(mib=100), timeout=60):
            assert chunk.seq == chunks
            total += len(chunk.data)
            chunks += 1
            if pace:
                time.sleep(pace)
        dl_end = time.monotonic()
        assert (chunks, total) == (100, 100 * MIB)
        # two more ticks after the download: the ticker is still alive
        n_after = len(ticks) + 2
        deadline = time.monotonic() + 3
        while len(ticks) < n_after and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.02)
        assert len(ticks) >= n_after, f"ticker stopped: {len(ticks)} ticks, errors {errors}"
    finally:
        ticker.cancel()
        reader.join(5)
        ch.close()
    assert not errors, errors
    seqs = [t[0] for t in ticks]
    assert seqs == list(range(len(seqs))), f"ticks lost or reordered: {seqs}"
    latency = [(seq, recv - sent) for seq, sent, recv in ticks]
    worst = max(latency, key=lambda x: x[1])
    during = [t for t in ticks if dl_start <= t[2] <= dl_end]
    info = (f"download {dl_end - dl_start:.2f}s, {len(during)} ticks during it, "
            f"worst latency {worst[1]:.3f}s at tick {worst[0]}")
    print(info)
    if pace:
        assert dl_end - dl_start >= 100 * pace, info
        # a tick every 100 ms all through the download
        assert len(during) >= int((dl_end - dl_start) / 0.1) - 3, info
    assert worst[1] < 1.0, info
    # Against the server's 100 ms schedule too: a send that blocked in the
    # server shows up as lateness rather than as latency.
    t0 = ticks[0][1]
    late = max(recv - (t0 + seq * 0.1) for seq, _, recv in ticks)
    assert late < 1.0, f"a tick arrived {late:.3f}s behind schedule; {info}"


def test_backpressure_download_to_slow_client(gen, runner, servers):
    pb2 = gen[0]
    sm = runner.start(cluster_config(members_of(servers)), wait_members=SERVER_NAMES)
    ch = channel(sm.port)
    stub = gen[1].EchoStub(ch)
    base = vm_hwm_mib(sm.pid)
    t0 = time.monotonic()
    chunks = total = 0
    try:
        for chunk in stub.Download(pb2.DownloadRequest(mib=200), timeout=60):
            assert chunk.seq == chunks
            chunks += 1
            total += len(chunk.data)
            assert time.monotonic() - t0 < 45, f"transfer too slow: {chunks} MiB after 45 s"
            time.sleep(0.045)  # ~10 s for 200 MiB
    finally:
        ch.close()
    elapsed = time.monotonic() - t0
    hwm = vm_hwm_mib(sm.pid)
    print(f"download: {elapsed:.1f}s, sidemux VmHWM {base:.1f} -> {hwm:.1f} MiB")
    assert (chunks, total) == (200, 200 * MIB)
    assert hwm < RSS_LIMIT_MIB, f"sidemux peak RSS {hwm:.1f} MiB (at start {base:.1f} MiB) over {elapsed:.1f}s"


def test_backpressure_upload_to_slow_server(gen, runner, servers):
    pb2 = gen[0]
    sm = runner.start(cluster_config(members_of(servers)), wait_members=SERVER_NAMES)
    ch = channel(sm.port)
    stub = gen[1].EchoStub(ch)
    base = vm_hwm_mib(sm.pid)
    data = b"\x5a" * MIB
    sent_done = []
    t0 = time.monotonic()

    def chunks():
        for i in range(200):
            yield pb2.Chunk(seq=i, data=data)
        sent_done.append(time.monotonic())

    try:
        summary = stub.Upload(chunks(), metadata=[("x-read-delay-ms", "45")], timeout=60)
    finally:
        ch.close()
    elapsed = time.monotonic() - t0
    hwm = vm_hwm_mib(sm.pid)
    print(f"upload: {elapsed:.1f}s, sidemux VmHWM {base:.1f} -> {hwm:.1f} MiB, "
          f"client done sending {summary.last_at - sent_done[0] if sent_done else None}s before the server")
    assert (summary.count, summary.bytes, summary.sha256) == (200, 200 * MIB, "out_of_order=0"), summary
    assert summary.last_at - summary.first_at > 5, "the server did not read slowly"
    assert hwm < RSS_LIMIT_MIB, f"sidemux peak RSS {hwm:.1f} MiB (at start {base:.1f} MiB) over {elapsed:.1f}s"
    # the client was held back: it could not finish sending long before the server finished reading
    assert sent_done and summary.last_at - sent_done[0] < 3, \
        f"client finished sending {summary.last_at - sent_done[0]:.1f}s before the server finished reading"


# --------------------------------------------------------------------------
# No member can take the stream


def _assert_unavailable(stub, pb2, label, limit):
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(pb2.Msg(seq=1, payload=b"x"), timeout=10)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (label, err.code(), err.details())
    details = err.details() or ""
    assert elapsed < limit, f"{label}: UNAVAILABLE after {elapsed:.3f}s, limit {limit}s ({details!r})"
    return details


class Blackhole:
    """A listening socket whose accept queue is full: connects to it hang (SYNs are dropped)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(0)
        self.fillers = []
        for _ in range(3):  # listen(0) queues one connection; later SYNs are dropped
            f = socket.socket()
            f.settimeout(0.2)
            try:
                f.connect(self.sock.getsockname())
            except OSError:
                pass
            self.fillers.append(f)
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            with pytest.raises(OSError):
                probe.connect(self.sock.getsockname())
        finally:
            probe.close()

    @property
    def address(self):
        return f"{HOST}:{self.sock.getsockname()[1]}"

    def close(self):
        for f in self.fillers:
            f.close()
        self.sock.close()


@pytest.mark.parametrize("how", ["closed_ports", "servers_stopped", "connect_hangs"])
def test_no_member_gives_unavailable(gen, runner, how):
    """No member can take the stream: UNAVAILABLE naming the cause, within connect_timeout.

    Refused connects fail at once (well inside connect_timeout). Connects that
    hang fail when the connect timeout fires, which started with sidemux just
    before the call: allow 250 ms of scheduling on top, not a second timeout
    per retry.
    """
    pb2 = gen[0]
    first_limit = CONNECT_TIMEOUT_S + 0.25 if how == "connect_hangs" else 1.0
    names = ["m1", "m2", "m3"]
    own = []
    holes = []
    try:
        if how == "closed_ports":
            sm = runner.start(cluster_config([(n, f"{HOST}:{dead_port()}") for n in names]))
        elif how == "connect_hangs":
            holes = [Blackhole() for _ in names]
            sm = runner.start(cluster_config([(n, h.address) for n, h in zip(names, holes)]))
        else:
            own = start_servers(gen[2], names)
            # /health follows the active checks: a member is down after
            # unhealthy_threshold (3) failed checks, so check often here.
            sm = runner.start(cluster_config([(s.name, s.address) for s in own],
                                             health_check={"interval": "250ms", "timeout": "200ms"}),
                              wait_members=names)
        ch = channel(sm.port)
        stub = gen[1].EchoStub(ch)
        try:
            if how == "servers_stopped":
                assert stub.Unary(pb2.Msg(seq=1), timeout=10).server in names
                for s in own:
                    s.stop()
            # right away (connections failing or still connecting) and once every member is known down
            first = _assert_unavailable(stub, pb2, "first call", first_limit)
            deadline = time.monotonic() + 10
            while sm.get("/health").status != 503 and time.monotonic() < deadline:
                time.sleep(0.02)
            # Each worker keeps its own member view and a new connection may
            # land on either: every answer must say 503.
            answers = [sm.get("/health").status for _ in range(8)]
            assert answers == [503] * 8, (answers, [sm.get("/debug/vars").body for _ in range(4)],
                                          [e for e in sm.log_lines() if e.get("msg") != "access"][-30:])
            later = _assert_unavailable(stub, pb2, "call with every member down", 1.0)
        finally:
            ch.close()
    finally:
        for s in own:
            s.stop()
        for h in holes:
            h.close()
    print(f"{how}: first {first!r}; later {later!r}")
    for details in (first, later):
        assert details, "UNAVAILABLE without a grpc-message"
        low = details.lower()
        assert any(n in details for n in names), f"grpc-message names no member: {details!r}"
        assert any(w in low for w in ("refused", "timed out", "timeout", "unhealthy", "reset", "closed",
                                      "goaway")), f"grpc-message gives no cause: {details!r}"
    # Every call made here has its access line: an OK one first when the
    # servers were stopped under it, then the two UNAVAILABLE.
    calls = 3 if how == "servers_stopped" else 2
    lines = sm.wait_lines(lambda e: e.get("msg") == "access" and e.get("path") == "/sidemuxtest.Echo/Unary", calls)
    assert [e.get("grpc_status") for e in lines][-2:] == ["UNAVAILABLE", "UNAVAILABLE"], lines


# --------------------------------------------------------------------------
# Members that refuse or reset streams (a raw HTTP/2 member written with h2)


class FakeMember(H2TestMember):
    """A plaintext HTTP/2 server that answers every stream with one behaviour.

    refuse:   RST_STREAM(REFUSED_STREAM) before any response
    goaway:   GOAWAY(last_stream_id=0, NO_ERROR), then closes the connection
    goaway_keep_open: the same GOAWAY, and the connection stays open until sidemux closes it
    reset:    response HEADERS and one gRPC message, then RST_STREAM(reset_code)

    grpc.health.v1 checks are answered SERVING, so sidemux's active health
    checks keep the member up and the behaviour meets real streams.
    """

    def __init__(self, behaviour, reset_code=2):
        self.behaviour = behaviour
        self.reset_code = reset_code
        self.streams = 0  # request HEADERS received
        self.lock = threading.Lock()
        super().__init__()

    def _serve(self, sock):
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        try:
            sock.sendall(conn.data_to_send())
            while not self.stopping:
                data = sock.recv(65536)
                if not data:
                    return
                close = False
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        sid = ev.stream_id
                        if dict(ev.headers).get(":path") == "/grpc.health.v1.Health/Check":
                            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                            conn.send_data(sid, b"\x00\x00\x00\x00\x02\x08\x01")  # SERVING
                            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                            continue
                        with self.lock:
                            self.streams += 1
                        if self.behaviour == "refuse":
                            conn.reset_stream(sid, 7)  # REFUSED_STREAM
                        elif self.behaviour in ("goaway", "goaway_keep_open"):
                            conn.close_connection(error_code=0, last_stream_id=0)
                            close = self.behaviour == "goaway"
                        else:
                            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                            conn.send_data(sid, b"\x00\x00\x00\x00\x02\x08\x01")
                            conn.reset_stream(sid, self.reset_code)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                if close:
                    return
        except Exception:
            return
        finally:
            sock.close()


@pytest.mark.parametrize("behaviour,reason", [("refuse", "refused_stream"), ("goaway", None),
                                              ("goaway_keep_open", None)])
def test_stream_that_never_reached_a_member_is_retried(gen, runner, servers, behaviour, reason):
    pb2 = gen[0]
    fake = FakeMember(behaviour)
    try:
        sm = runner.start(cluster_config([("bad", fake.address), ("s1", servers["s1"].address)]),
                          wait_members=["s1"])
        before = server_stats(gen, {"s1": servers["s1"]})["s1"]
        ch = channel(sm.port)
        try:
            stub = gen[1].EchoStub(ch)
            replies = [stub.Unary(pb2.Msg(seq=i, payload=b"r"), timeout=10) for i in range(20)]
        finally:
            ch.close()
        after = server_stats(gen, {"s1": servers["s1"]})["s1"]
        refused = fake.streams
    finally:
        fake.close()
    assert [r.server for r in replies] == ["s1"] * 20
    assert after.ok.get("Unary", 0) - before.ok.get("Unary", 0) == 20, "a retried call ran twice or not at all"
    assert refused >= 1, "the balancer never tried the refusing member (20 calls, 2 members)"
    m = sm.metrics()
    retries = m.sum("sidemux_upstream_retries_total", member="bad")
    assert retries >= 1, m.series("sidemux_upstream_retries_total")
    if reason:
        assert m.value("sidemux_upstream_retries_total", member="bad", reason=reason) == refused, \
            (refused, m.series("sidemux_upstream_retries_total"))


@pytest.mark.parametrize("code", [2, 8], ids=["INTERNAL_ERROR", "CANCEL"])
def test_member_reset_resets_client_stream(gen, runner, code):
    pb2 = gen[0]
    fake = FakeMember("reset", reset_code=code)
    try:
        sm = runner.start(cluster_config([("bad", fake.address)]), wait_members=["bad"])
        msg = pb2.Msg(seq=1).SerializeToString()
        with H2Client(sm.port, timeout=5) as c:
            sid = c.grpc_request("/sidemuxtest.Echo/Unary", msg)
            st = c.wait([sid], timeout=5)[0]
        # the member's reset arrives as a reset, with its code; not turned into a status
        assert st.reset == code, f"client stream: reset {st.reset}, events {st.events}, trailers {st.trailers}"
        fields = dict((st.headers or []) + (st.trailers or []))
        assert "grpc-status" not in fields, (st.headers, st.trailers)
        # the stream reached the member: it is not replayed
        assert fake.streams == 1
        ch = channel(sm.port)
        try:
            with pytest.raises(grpc.RpcError) as info:
                gen[1].EchoStub(ch).Unary(pb2.Msg(seq=2), timeout=10)
        finally:
            ch.close()
        want = {2: grpc.StatusCode.INTERNAL, 8: grpc.StatusCode.CANCELLED}[code]
        assert info.value.code() == want, (info.value.code(), info.value.details())
        assert fake.streams == 2
    finally:
        fake.close()


# --------------------------------------------------------------------------
# Metrics and access log


def test_metrics_and_access_log_match_servers(gen, runner, servers):
    pb2 = gen[0]
    sm = runner.start(cluster_config(members_of(servers)), wait_members=SERVER_NAMES)
    before = server_stats(gen, servers)
    ch = channel(sm.port)
    stub = gen[1].EchoStub(ch)
    expected_paths = Counter()
    try:
        for i in range(30):
            stub.Unary(pb2.Msg(seq=i, payload=b"u" * 100), timeout=10)
        expected_paths["/sidemuxtest.Echo/Unary"] += 30
        for _ in range(6):
            assert len(list(stub.ServerStream(pb2.StreamRequest(count=10, size=1000), timeout=10))) == 10
        expected_paths["/sidemuxtest.Echo/ServerStream"] += 6
        for _ in range(3):
            stub.ClientStream(iter([pb2.Msg(payload=b"c" * 500)] * 5), timeout=10)
        expected_paths["/sidemuxtest.Echo/ClientStream"] += 3
        for _ in range(4):
            with pytest.raises(grpc.RpcError) as info:
                stub.Status(pb2.StatusRequest(code=5, message="nope"), timeout=10)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        expected_paths["/sidemuxtest.Echo/Status"] += 4
    finally:
        ch.close()
    total = sum(expected_paths.values())
    after = server_stats(gen, servers)

    # counters are bumped when each stream closes: wait for all of them
    deadline = time.monotonic() + 5
    for _ in range(500):
        m = sm.metrics()
        if m.sum("sidemux_upstream_streams_total") >= total or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    series = {dict(l)["member"] + "/" + dict(l)["grpc_status"]: v
              for l, v in m.series("sidemux_upstream_streams_total").items() if v}
    assert m.sum("sidemux_upstream_streams_total") == total, series
    for name in servers:
        ok_server = sum(after[name].ok.values()) - sum(before[name].ok.values())
        nf_server = after[name].started.get("Status", 0) - before[name].started.get("Status", 0)
        assert (m.value("sidemux_upstream_streams_total", member=name, grpc_status="OK") or 0) == ok_server, \
            f"{name}: server counted {ok_server} OK calls; sidemux series {series}"
        assert (m.value("sidemux_upstream_streams_total", member=name, grpc_status="NOT_FOUND") or 0) == \
            nf_server, f"{name}: server answered {nf_server} NOT_FOUND; sidemux series {series}"
    assert m.sum("sidemux_upstream_streams_total", grpc_status="NOT_FOUND") == 4, series

    lines = wait_access_count(sm, total)
    assert len(lines) == total, f"{len(lines)} access lines for {total} streams"
    for e in lines:
        missing = [k for k in ("client", "proto", "path", "member", "grpc_status", "duration_ms", "bytes_in",
                               "bytes_out") if k not in e]
        assert not missing, f"access line lacks {missing}: {e}"
        assert e["proto"] == "h2" and e["member"] in servers, e
        assert e["client"].startswith(HOST), e
        assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0, e
        assert e["grpc_status"] == ("NOT_FOUND" if e["path"].endswith("/Status") else "OK"), e
    assert Counter(e["path"] for e in lines) == expected_paths
    for e in lines:
        if e["path"].endswith("/Unary"):
            assert e["bytes_in"] >= 5 + 100 and e["bytes_out"] >= 5 + 100, e
        if e["path"].endswith("/ServerStream"):
            assert e["bytes_out"] >= 10 * (5 + 1000), e
        if e["path"].endswith("/ClientStream"):
            assert e["bytes_in"] >= 5 * (5 + 500), e
    per_member = Counter(e["member"] for e in lines if e["grpc_status"] == "OK")
    for name in servers:
        assert per_member[name] == (m.value("sidemux_upstream_streams_total", member=name, grpc_status="OK") or 0)


def test_member_killed_mid_stream_gives_unavailable(gen, runner):
    """A member killed while a server stream is between messages: the client
    gets the messages so far, then UNAVAILABLE in trailers (what etcd
    clients retry on), not a bare RST_STREAM that reads as INTERNAL."""
    pb2 = gen[0]
    victim = grpc_testsvc.EchoServer("victim", gen[2]).start()
    try:
        sm = runner.start(cluster_config([("victim", f"{HOST}:{victim.port}")]), wait_members=["victim"])
        ch = channel(sm.port)
        try:
            ticker = gen[1].EchoStub(ch).Ticker(pb2.TickerRequest(count=600, interval_ms=100), timeout=30)
            first = next(ticker)
            assert first.seq == 0, first
            victim.proc.kill()
            victim.proc.wait(5)
            with pytest.raises(grpc.RpcError) as info:
                for _ in ticker:
                    pass
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, (info.value.code(), info.value.details())
            assert "victim" in info.value.details(), info.value.details()
        finally:
            ch.close()
    finally:
        victim.stop()

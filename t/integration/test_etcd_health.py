"""One health checker per process, and sidemux in front of etcd (cluster.kind: etcd).

- With workers: 4, a member gets one health check per interval (counted on the member).
- Status-based health: two of three etcd members SIGSTOPped leave the third without
  a leader; sidemux marks it down, /health names the problem, gRPC and gateway calls
  fail fast, a Watch open on it ends (gRPC: UNAVAILABLE; gateway: the connection
  closes), and everything comes back after SIGCONT.
- A NOSPACE alarm fails /health, not /readyz, and reads still work.
- Leader routing: puts land on the leader (access log), reads spread; etcdctl
  move-leader during a put loop (etcdctl, and three gRPC clients back to back)
  fails no put and puts follow the new leader.
"""

import json
import select
import signal
import threading
import time
from concurrent import futures

import grpc
import pytest

from conftest import HOST, build_request, connect, http_request, read_until_close
from etcd_cluster import EtcdCluster, etcdctl, start_cluster
from test_http1_forward import ChunkStream

INTERVAL = 0.3
TIMEOUT = 0.2
MARGIN = 1.0  # scheduling slack on a loaded 2-core machine


def wait_for(fn, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / step) + 10):
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def etcd_config(members, workers=2, interval=INTERVAL, **cluster):
    cfg = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": workers,
        "cluster": {
            "kind": "etcd",
            "members": [{"name": m.name, "address": m.endpoint} for m in members],
            "connect_timeout": "1s",
            "health_check": {"interval": f"{int(interval * 1000)}ms", "timeout": f"{int(TIMEOUT * 1000)}ms",
                             "unhealthy_threshold": 2, "healthy_threshold": 2},
        },
        "log": {"level": "info", "access_log": True},
    }
    cfg["cluster"].update(cluster)
    return cfg


def member_up(sm, name):
    return sm.metrics().value("sidemux_member_up", member=name)


def health(sm):
    r = sm.get("/health")
    return r.status, json.loads(r.body)


def raw(b):
    return b


def unary(port, method, request=b"", timeout=5.0):
    with grpc.insecure_channel(f"{HOST}:{port}") as ch:
        call = ch.unary_unary(method, request_serializer=raw, response_deserializer=raw)
        return call(request, timeout=timeout)


# --------------------------------------------------------------------------
# One checker per process


class CountingHealthMember:
    """A grpcio server whose grpc.health.v1.Health/Check answers SERVING and counts calls."""

    def __init__(self):
        self.lock = threading.Lock()
        self.checks = []

        def check(request, context):
            with self.lock:
                self.checks.append(time.monotonic())
            return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

        handler = grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health",
            {"Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=raw, response_serializer=raw)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"{HOST}:0")
        self.server.start()

    def count_between(self, t0, t1):
        with self.lock:
            return sum(1 for t in self.checks if t0 <= t < t1)


def test_one_check_per_interval_whatever_the_workers(sidemux_factory):
    member = CountingHealthMember()
    try:
        cfg = {
            "listeners": [{"name": "client", "address": f"{HOST}:0"}],
            "workers": 4,
            "cluster": {"members": [{"name": "a", "address": f"{HOST}:{member.port}"}],
                        "health_check": {"interval": "200ms", "timeout": "150ms"}},
            "log": {"level": "info", "access_log": False},
        }
        sm = sidemux_factory(cfg)
        wait_for(lambda: member_up(sm, "a") == 1, 10, what="member a up")
        window = 3.0
        t0 = time.monotonic()
        time.sleep(window)
        n = member.count_between(t0, t0 + window)
        expected = window / 0.2
        # One checker: ~15 checks in 3 s (a late timer loses a few); one per
        # worker would be ~60.
        assert expected * 0.5 <= n <= expected * 1.3 + 1, f"{n} checks in {window}s with 4 workers"
        text = sm.get("/metrics").body.decode()
        lines = [ln for ln in text.splitlines() if ln.startswith('sidemux_member_up{member="a"}')]
        assert lines == ['sidemux_member_up{member="a"} 1'], lines
        changes = [e for e in sm.log_lines() if e.get("msg") == "member health changed"]
        assert len(changes) == 1, f"one health-change line per transition, got {changes}"
    finally:
        member.server.stop(0)


# --------------------------------------------------------------------------
# etcd: a member without a leader


def watch_request(key=b"k"):
    # WatchRequest{create_request: WatchCreateRequest{key}}
    inner = b"\x0a" + bytes([len(key)]) + key
    return b"\x0a" + bytes([len(inner)]) + inner


class Watch:
    """A raw etcd Watch through sidemux on its own thread; records how it ended."""

    def __init__(self, port):
        self.channel = grpc.insecure_channel(f"{HOST}:{port}")
        self.created = threading.Event()
        self.ended = threading.Event()
        self.code = None
        self.details = None
        self.stop = threading.Event()
        call = self.channel.stream_stream("/etcdserverpb.Watch/Watch", request_serializer=raw,
                                          response_deserializer=raw)

        def requests():
            yield watch_request()
            self.stop.wait(120)

        self.responses = call(requests(), timeout=120)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for _ in self.responses:
                self.created.set()
        except grpc.RpcError as e:
            self.code, self.details = e.code(), e.details()
        self.ended.set()

    def close(self):
        self.stop.set()
        self.responses.cancel()
        self.channel.close()


def gateway_watch(port):
    """A /v3/watch over HTTP/1 through sidemux, created; returns its socket."""
    sock = connect(port, timeout=10)
    sock.sendall(build_request("/v3/watch", "POST", {"Content-Type": "application/json"},
                               json.dumps({"create_request": {"key": "aw=="}}).encode()))
    stream = ChunkStream(sock)
    assert stream.head.status == 200 and stream.next_object(10)["result"].get("created") is True
    return sock


def gateway_watch_ended(socks, timeout):
    deadline = time.monotonic() + timeout
    for _ in range(100):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select(socks, [], [], left)
        if any(read_until_close(sock, timeout=1)[1] for sock in readable):
            return True
    return False


def test_member_without_leader_is_down_and_its_streams_end(tmp_path_factory, sidemux_factory):
    with start_cluster(tmp_path_factory) as cluster:
        # One worker and round robin: three watches on one connection land on m1, m2, m3.
        sm = sidemux_factory(etcd_config(cluster.members, workers=1, balance="round_robin"))
        for name in cluster.names:
            wait_for(lambda n=name: member_up(sm, n) == 1, 15, what=f"{name} up")
        watches = [Watch(sm.port) for _ in range(3)]
        # And three over the gateway, one on each member the same way.
        gateway = [gateway_watch(sm.port) for _ in range(3)]
        stopped = []
        try:
            for w in watches:
                assert w.created.wait(10), "watch not created"
            for m in cluster.members[1:]:
                m.proc.send_signal(signal.SIGSTOP)
                stopped.append(m)
            t0 = time.monotonic()
            wait_for(lambda: member_up(sm, "m1") == 0, 8 * INTERVAL + 3 + MARGIN, what="m1 marked down")
            status, body = health(sm)
            assert status == 503 and "m1 has no leader" in body["reason"], body
            # A call fails fast rather than hanging until its deadline.
            t1 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                unary(sm.port, "/etcdserverpb.KV/Range", b"\x0a\x01k", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - t1 < 2.0
            # So does a gateway call, with etcd's JSON error shape.
            t1 = time.monotonic()
            r = http_request(sm.port, "/v3/kv/range", "POST", {"Content-Type": "application/json"},
                             b'{"key": "aw=="}', timeout=10)
            assert r.status == 503 and r.json()["code"] == 14, r
            assert time.monotonic() - t1 < 2.0
            # The gateway watch on m1 ends: its client connection is closed.
            assert gateway_watch_ended(gateway, 10), "no gateway watch ended within 10 s"
            assert sm.wait_lines(lambda e: e.get("msg") == "access" and e.get("proto") == "http1"
                                 and e.get("path") == "/v3/watch" and e.get("member") == "m1", 1)
            # The watch on m1 ended naming the lost leader; the others with their silent connections.
            for w in watches:
                assert w.ended.wait(10), "a watch through sidemux did not end"
            # (Those on m2 and m3 end as their connections are found dead: how such a
            # stream ends towards the client is the fault paths' business, not this test's.)
            ends = [(w.code, w.details) for w in watches]
            assert (grpc.StatusCode.UNAVAILABLE, "member m1 has no leader") in ends, ends
            print(f"m1 down {time.monotonic() - t0:.2f}s after SIGSTOP of m2, m3")
        finally:
            for w in watches:
                w.close()
            for sock in gateway:
                sock.close()
            for m in stopped:
                m.proc.send_signal(signal.SIGCONT)
        for name in cluster.names:
            wait_for(lambda n=name: member_up(sm, n) == 1, 20, what=f"{name} up after SIGCONT")
        assert health(sm)[0] == 200
        res = etcdctl(f"{HOST}:{sm.port}", "put", "after", "cont")
        assert res.ok, res


# --------------------------------------------------------------------------
# etcd: NOSPACE


class SmallQuotaCluster(EtcdCluster):
    def member_argv(self, m, initial):
        return super().member_argv(m, initial) + ["--quota-backend-bytes", str(1 << 20)]


def test_nospace_alarm_fails_health_not_readiness(tmp_path_factory, sidemux_factory):
    cluster = SmallQuotaCluster(tmp_path_factory.mktemp("etcd-quota"), size=1)
    try:
        cluster.start()
        sm = sidemux_factory(etcd_config(cluster.members))
        wait_for(lambda: member_up(sm, "m1") == 1, 15, what="m1 up")
        assert cluster.etcdctl("put", "keep", "me").ok
        value = "x" * (100 << 10)
        for i in range(60):
            res = cluster.etcdctl("put", f"fill{i}", input=value)
            if not res.ok:
                assert "database space exceeded" in res.stderr, res
                break
        else:
            pytest.fail("1 MiB quota never filled")
        status, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(health(sm)), 5,
                                what="/health 503")
        assert "NOSPACE" in body["reason"], body
        r = sm.get("/readyz")
        assert r.status == 200, r
        res = etcdctl(f"{HOST}:{sm.port}", "get", "keep")
        assert res.ok and "me" in res.stdout, res
        vars_ = json.loads(sm.get("/debug/vars").body)
        view = vars_["members"][0]["etcd"]
        assert any("NOSPACE" in a for a in view["alarms"]) and view["db_size"] > 0, view
    finally:
        cluster.stop()


# --------------------------------------------------------------------------
# etcd: leader routing


def status_of(cluster):
    """{member name: (id hex, is_leader)} straight from the members."""
    out = {}
    for i, m in enumerate(cluster.members):
        res = cluster.etcdctl("endpoint", "status", "-w", "json", member=i)
        assert res.ok, res
        st = json.loads(res.stdout)[0]["Status"]
        out[m.name] = (format(st["header"]["member_id"], "x"), st["leader"] == st["header"]["member_id"])
    return out


def leader_name(cluster):
    return next(name for name, (_, lead) in status_of(cluster).items() if lead)


def test_writes_follow_the_leader_reads_spread(tmp_path_factory, sidemux_factory):
    with start_cluster(tmp_path_factory) as cluster:
        sm = sidemux_factory(etcd_config(cluster.members, workers=2))
        leader = leader_name(cluster)
        wait_for(lambda: sm.metrics().value("sidemux_etcd_leader", member=leader) == 1, 10,
                 what=f"sidemux names {leader} leader")
        ep = f"{HOST}:{sm.port}"
        start = len(sm.raw_lines())
        for i in range(15):
            assert etcdctl(ep, "put", f"k{i}", "v").ok
            assert etcdctl(ep, "get", f"k{i}").ok
        is_access = lambda path: lambda e: e.get("msg") == "access" and e.get("path") == path  # noqa: E731
        puts = sm.wait_lines(is_access("/etcdserverpb.KV/Put"), 15, since=start)
        reads = sm.wait_lines(is_access("/etcdserverpb.KV/Range"), 15, since=start)
        assert len(puts) == 15 and {e["member"] for e in puts} == {leader}, puts
        assert len({e["member"] for e in reads}) >= 2, reads
        assert sm.metrics().sum("sidemux_etcd_routed_total", route="leader") >= 15

        # move-leader during a put loop: no put fails, puts follow the new leader.
        ids = status_of(cluster)
        target = next(name for name in cluster.names if name != leader)
        failures, done = [], threading.Event()
        count = [0]

        def put_loop():
            while not done.is_set() and count[0] < 400:
                res = etcdctl(ep, "put", f"m{count[0]}", "v")
                count[0] += 1
                if not res.ok:
                    failures.append(res)

        def grpc_put_loop(prefix):
            # Back to back, so that puts are in flight while leadership moves.
            with grpc.insecure_channel(ep) as ch:
                call = ch.unary_unary("/etcdserverpb.KV/Put", request_serializer=raw, response_deserializer=raw)
                for i in range(5000):
                    if done.is_set():
                        return
                    key = f"{prefix}{i}".encode()
                    try:
                        call(b"\x0a" + bytes([len(key)]) + key + b"\x12\x01v", timeout=10)
                    except grpc.RpcError as e:
                        failures.append((e.code(), e.details()))

        threads = [threading.Thread(target=put_loop)] + [
            threading.Thread(target=grpc_put_loop, args=(f"g{n}/",)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: count[0] >= 5, 10, what="the put loop under way")
            moved_at = time.monotonic()
            res = cluster.etcdctl("move-leader", ids[target][0], member=cluster.names.index(leader))
            assert res.ok, res
            wait_for(lambda: sm.metrics().value("sidemux_etcd_leader", member=target) == 1, 5,
                     what=f"sidemux names {target} leader")
            settled = time.monotonic()
            mark = len(sm.raw_lines())
            since_mark = count[0]
            wait_for(lambda: count[0] >= since_mark + 5, 10, what="five puts after the leader moved")
        finally:
            done.set()
            for t in threads:
                t.join(30)
        # etcd drops proposals while leadership moves ("raft proposal dropped"):
        # sidemux sends those on once the new leader is known, so no put fails.
        assert not failures, failures[:3]
        retried = sm.metrics().sum("sidemux_upstream_retries_total", reason="proposal_dropped")
        print(f"{count[0]} puts, {retried:.0f} dropped proposals retried")
        # (Puts in flight at the mark may still end on the old leader.)
        after = sm.wait_lines(is_access("/etcdserverpb.KV/Put"), 5, since=mark)
        assert after and {e["member"] for e in after[-5:]} == {target}, after[-5:]
        assert settled - moved_at < 2 * INTERVAL + MARGIN, f"leader followed after {settled - moved_at:.2f}s"

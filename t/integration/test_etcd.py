"""etcdctl through sidemux in front of a real 3-member etcd cluster.

Every etcdctl below talks to sidemux's one port only (etcd is reached directly
only to set up or cross-check data). The cluster and sidemux are started once
for the module.
"""

import collections
import json
import queue
import re
import threading
import time

import pytest

from conftest import HOST, Sidemux, sidemux_binary, stop_process, wait_members_up
from etcd_cluster import etcdctl, etcdctl_popen, start_cluster

READY_TIMEOUT = 15.0  # sidemux: every member up


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with start_cluster(tmp_path_factory) as c:
        yield c


def _member_up(sm):
    m = sm.metrics()
    return {name: m.sum("sidemux_member_up", member=name) for name in ("m1", "m2", "m3")}


@pytest.fixture(scope="module")
def sm(cluster, tmp_path_factory):
    config = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "workers": 2,
        "cluster": {
            "name": "etcd",
            "members": [{"name": m.name, "address": m.endpoint} for m in cluster.members],
            "balance": "least_request",
        },
        "log": {"level": "info", "format": "json", "access_log": True},
    }
    proc = Sidemux(sidemux_binary(), tmp_path_factory.mktemp("sidemux"), config, name="sidemux-etcd")
    try:
        proc.start()
        wait_members_up(proc, cluster.names, READY_TIMEOUT)
        yield proc
    finally:
        proc.kill_if_running()


# --------------------------------------------------------------------------
# Helpers


def endpoint(sm):
    return f"{HOST}:{sm.port}"


def log_tail(sm, n=25):
    return "\n".join(sm.raw_lines()[-n:])


def ctl(sm, *args, input=None, timeout=15.0):
    """etcdctl through sidemux; asserts rc 0 and returns the result."""
    res = etcdctl(endpoint(sm), *args, input=input, timeout=timeout)
    assert res.rc == 0, f"{res}\nsidemux log tail:\n{log_tail(sm)}"
    return res


def access_lines(sm, start=0):
    return [e for e in sm.log_lines(since=start) if e.get("msg") == "access"]


class LineReader:
    """Collects a child's stdout lines on a thread; lines are read with a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.q = queue.Queue()
        self.seen = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.q.put(None)  # EOF

    def line(self, deadline):
        """The next line, None at EOF; raises TimeoutError at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no line before the deadline")
        try:
            line = self.q.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("no line before the deadline") from None
        if line is not None:
            self.seen.append(line)
        return line


def read_watch_event(reader, deadline):
    """One `etcdctl watch` event: (type, key, value)."""
    out = []
    for _ in range(3):
        line = reader.line(deadline)
        assert line is not None, f"watch output ended; seen {reader.seen[-12:]}"
        out.append(line)
    return tuple(out)


def stderr_of(proc):
    try:
        return proc.stderr.read().decode("utf-8", "replace")[-2000:] if proc.stderr else ""
    except (OSError, ValueError):
        return ""


# --------------------------------------------------------------------------
# Tests


def test_health_through_sidemux(sm):
    resp = sm.get("/health")
    assert resp.status == 200, resp
    assert resp.json() == {"health": "true", "reason": ""}, resp
    up = _member_up(sm)
    assert all(v >= 1 for v in up.values()), up


def test_put_get_del(sm, cluster):
    assert ctl(sm, "put", "sm-basic", "hello world").stdout == "OK\n"
    assert ctl(sm, "get", "sm-basic").stdout == "sm-basic\nhello world\n"
    # the write reached the cluster: every member sees it
    for i in range(3):
        direct = cluster.etcdctl("get", "sm-basic", "--consistency=l", member=i)
        assert direct.rc == 0 and direct.stdout == "sm-basic\nhello world\n", direct
    # JSON output carries a revision and the value (base64)
    res = json.loads(ctl(sm, "get", "sm-basic", "-w", "json").stdout)
    assert res["count"] == 1 and res["header"]["revision"] > 0, res
    assert ctl(sm, "put", "sm-basic", "second").stdout == "OK\n"
    assert ctl(sm, "get", "sm-basic", "--print-value-only").stdout == "second\n"
    assert ctl(sm, "del", "sm-basic").stdout == "1\n"
    assert ctl(sm, "get", "sm-basic").stdout == ""
    direct = cluster.etcdctl("get", "sm-basic", member=1)
    assert direct.rc == 0 and direct.stdout == "", direct
    # deleting again deletes nothing
    assert ctl(sm, "del", "sm-basic").stdout == "0\n"


def test_txn_success_and_failure_branches(sm):
    assert ctl(sm, "put", "sm-txn", "v1").stdout == "OK\n"
    ctl(sm, "del", "sm-txn-result")
    script = ('value("sm-txn") = "v1"\n'
              "\n"
              "put sm-txn v2\n"
              "put sm-txn-result success\n"
              "\n"
              "put sm-txn-result failure\n"
              "\n")
    res = ctl(sm, "txn", "--interactive=false", input=script)
    assert res.stdout.split("\n")[0] == "SUCCESS", res
    assert res.stdout.split("\n").count("OK") == 2, res  # both operations of the success branch
    assert ctl(sm, "get", "sm-txn-result", "--print-value-only").stdout == "success\n"
    assert ctl(sm, "get", "sm-txn", "--print-value-only").stdout == "v2\n"
    # the same compare fails now (value is v2): the failure branch runs
    res = ctl(sm, "txn", "--interactive=false", input=script)
    assert res.stdout.split("\n")[0] == "FAILURE", res
    assert ctl(sm, "get", "sm-txn-result", "--print-value-only").stdout == "failure\n"
    assert ctl(sm, "get", "sm-txn", "--print-value-only").stdout == "v2\n"


def test_watch_receives_50_events_in_order(sm):
    key = "sm-watch"
    proc = etcdctl_popen(endpoint(sm), "watch", key)
    try:
        reader = LineReader(proc)
        # registered once a put shows up as an event (bounded: 50 tries, 10 s)
        deadline = time.monotonic() + 10.0
        first = None
        puts = 0
        for i in range(50):
            assert proc.poll() is None, f"watch exited {proc.returncode}: {stderr_of(proc)}"
            ctl(sm, "put", key, f"ready-{i}")
            puts += 1
            try:
                first = read_watch_event(reader, min(deadline, time.monotonic() + 0.3))
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    break
        assert first is not None, f"watch never saw a put after {puts} puts; output {reader.seen}; " \
                                  f"sidemux log:\n{log_tail(sm)}"
        # drain the events of any earlier sentinel puts that arrived late, up to the last one
        last = f"ready-{puts - 1}"
        event = first
        for _ in range(puts):
            assert event[0] == "PUT" and event[1] == key and event[2].startswith("ready-"), event
            if event[2] == last:
                break
            event = read_watch_event(reader, time.monotonic() + 5.0)
        assert event[2] == last, event

        t0 = time.monotonic()
        for i in range(50):
            ctl(sm, "put", key, f"value-{i:02d}")
        deadline = time.monotonic() + 10.0
        events = [read_watch_event(reader, deadline) for _ in range(50)]
        assert events == [("PUT", key, f"value-{i:02d}") for i in range(50)], events
        elapsed = time.monotonic() - t0
        # exactly 50: nothing more arrives
        with pytest.raises(TimeoutError):
            extra = reader.line(time.monotonic() + 0.3)
            pytest.fail(f"unexpected extra watch output {extra!r}")
        assert proc.poll() is None, f"watch exited {proc.returncode}: {stderr_of(proc)}"
        assert elapsed < 20.0
    finally:
        stop_process(proc, timeout=5)


def test_lease_keepalive_keeps_lease_and_key(sm):
    ttl = 3
    res = ctl(sm, "lease", "grant", str(ttl))
    m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n", res.stdout)
    assert m, res
    lease = m.group(1)
    assert int(m.group(2)) == ttl
    assert ctl(sm, "put", "sm-leased", "alive", f"--lease={lease}").stdout == "OK\n"

    proc = etcdctl_popen(endpoint(sm), "lease", "keep-alive", lease)
    renewals = []
    try:
        reader = LineReader(proc)
        t0 = time.monotonic()
        deadline = t0 + 15.0
        # run past the TTL (the lease would expire without renewals) and see several renewals
        while len(renewals) < 4 or time.monotonic() - t0 < ttl + 1.5:
            line = reader.line(deadline)
            assert line is not None, \
                f"keep-alive ended (rc {proc.poll()}): {reader.seen} {stderr_of(proc)}; log:\n{log_tail(sm)}"
            assert re.fullmatch(rf"lease {lease} keepalived with TTL\({ttl}\)", line), reader.seen
            renewals.append(time.monotonic() - t0)
        assert proc.poll() is None
    finally:
        stop_process(proc, timeout=5)
    assert len(renewals) >= 4, renewals
    assert renewals[-1] - renewals[0] >= ttl, renewals  # renewals over more than one TTL

    res = ctl(sm, "lease", "timetolive", lease, "--keys")
    m = re.fullmatch(rf"lease {lease} granted with TTL\({ttl}s\), remaining\((-?\d+)s\), "
                     r"attached keys\(\[(.*)\]\)\n", res.stdout)
    assert m, f"lease not alive after keep-alive: {res}"
    assert int(m.group(1)) > 0, res
    assert m.group(2).split() == ["sm-leased"], res
    assert ctl(sm, "get", "sm-leased", "--print-value-only").stdout == "alive\n"
    # the lease list knows it too
    assert lease in ctl(sm, "lease", "list").stdout
    # revoking through sidemux deletes the attached key
    ctl(sm, "lease", "revoke", lease)
    assert ctl(sm, "get", "sm-leased").stdout == ""


def test_member_list_shows_three_members(sm, cluster):
    res = ctl(sm, "member", "list", "-w", "json")
    members = json.loads(res.stdout)["members"]
    assert len(members) == 3, res
    got = {m["name"]: m["clientURLs"] for m in members}
    assert got == {m.name: [m.client_url] for m in cluster.members}, got
    simple = ctl(sm, "member", "list").stdout.strip().split("\n")
    assert len(simple) == 3 and all(", started, " in line for line in simple), simple


def test_endpoint_status(sm, cluster):
    ids = {m["ID"] for m in json.loads(cluster.etcdctl("member", "list", "-w", "json").stdout)["members"]}
    assert len(ids) == 3
    res = ctl(sm, "endpoint", "status", "-w", "json")
    statuses = json.loads(res.stdout)
    assert len(statuses) == 1, res
    st = statuses[0]
    assert st["Endpoint"] == endpoint(sm), st
    assert st["Status"]["header"]["member_id"] in ids, st
    assert st["Status"]["leader"] in ids, st
    assert st["Status"]["version"].startswith("3.4."), st
    health = ctl(sm, "endpoint", "health")  # etcdctl 3.4 prints the health line on stderr
    assert health.stderr.startswith(f"{endpoint(sm)} is healthy: successfully committed proposal"), health


def _ok_by_member(sm):
    m = sm.metrics()
    return {name: m.sum("sidemux_upstream_streams_total", member=name, grpc_status="OK")
            for name in ("m1", "m2", "m3")}


def test_metrics_ok_streams_on_several_members(sm):
    before = _ok_by_member(sm)
    for i in range(12):
        ctl(sm, "get", f"sm-metrics-{i}")
    after = _ok_by_member(sm)
    delta = {k: after[k] - before[k] for k in after}
    assert sum(delta.values()) >= 12, (before, after)
    assert sum(1 for v in delta.values() if v > 0) >= 2, f"OK streams by member: {delta}"
    text = sm.get("/metrics").body.decode()
    assert re.search(r'^sidemux_upstream_streams_total\{[^}]*grpc_status="OK"', text, re.M), text[:2000]


def test_one_connection_streams_spread_over_members(sm, cluster):
    """make-mirror keeps one connection to its destination and sends one Txn stream per revision."""
    src, dst = "sm-mirror-src/", "sm-mirror-dst/"
    start = len(sm.raw_lines())
    proc = etcdctl_popen(endpoint(sm), "make-mirror", f"--prefix={src}", f"--dest-prefix={dst}", endpoint(sm))
    try:
        # the mirror is running once a key put straight into etcd shows up mirrored (bounded)
        deadline = time.monotonic() + 10.0
        mirrored = False
        for i in range(50):
            assert proc.poll() is None, f"make-mirror exited {proc.returncode}: {stderr_of(proc)}"
            assert cluster.etcdctl("put", f"{src}ready", str(i)).rc == 0
            for _ in range(10):
                got = cluster.etcdctl("get", f"{dst}ready", "--print-value-only", member=1)
                if got.rc == 0 and got.stdout == f"{i}\n":
                    mirrored = True
                    break
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.03)
            if mirrored or time.monotonic() >= deadline:
                break
        assert mirrored, f"make-mirror never mirrored a key; log:\n{log_tail(sm)}"

        n = 20
        for i in range(n):
            assert cluster.etcdctl("put", f"{src}k{i:02d}", f"v{i}", member=i % 3).rc == 0
        deadline = time.monotonic() + 10.0
        count = None
        for _ in range(200):
            got = cluster.etcdctl("get", f"{dst}k", "--prefix", "--keys-only", "-w", "json", member=2)
            count = json.loads(got.stdout).get("count", 0) if got.rc == 0 else None
            if count == n or time.monotonic() >= deadline:
                break
            time.sleep(0.03)
        assert count == n, f"{count} of {n} keys mirrored; log:\n{log_tail(sm)}"
        assert proc.poll() is None, f"make-mirror exited {proc.returncode}: {stderr_of(proc)}"
    finally:
        stop_process(proc, timeout=5)
    got = cluster.etcdctl("get", f"{dst}k19", "--print-value-only")
    assert got.stdout == "v19\n", got

    # the destination connection: the client address that carried the Txn streams
    by_client = collections.defaultdict(list)
    for e in access_lines(sm, start):
        if e.get("path") == "/etcdserverpb.KV/Txn":
            by_client[e["client"]].append(e)
    assert len(by_client) == 1, f"Txn streams from {len(by_client)} client connections: {dict(by_client)}"
    (client, lines), = by_client.items()
    assert len(lines) >= n, f"{len(lines)} Txn access lines from {client}"
    assert all(e["grpc_status"] == "OK" for e in lines), lines
    members = collections.Counter(e["member"] for e in lines)
    assert len(members) >= 2, \
        f"all {len(lines)} streams of one connection ({client}) went to one member: {members}"

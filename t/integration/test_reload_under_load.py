"""Reloads under load (issue 11): five SIGHUP reloads that add, remove and
replace members, change limits and listeners, while three grpcio clients call
in a loop, a bidi stream exchanges messages and an etcd Watch receives every
put; not one call fails and both streams go on across all five.

Two sidemux instances, both `workers: 2`: A (kind grpc) in front of
grpcio Echo members takes the clients and the bidi stream; B (kind etcd) in
front of a 3-member etcd cluster takes the Watch and the puts (etcdctl, whose
puts go through B too). Each reload changes both. B's member changes are on
its third member: the Watch is on m1 or m2, and a Watch on a removed member
would (rightly) end at drain_timeout, which is not what is tested here.
"""

import json
import threading
import time

import grpc
import pytest

from conftest import HOST, Sidemux, http_request, sidemux_binary, stop_process, wait_members_up
from etcd_cluster import etcdctl, etcdctl_popen, start_cluster
from test_etcd import LineReader, read_watch_event, stderr_of
from test_grpc_forwarding import channel, gen, start_servers  # noqa: F401
from test_reload import reload
from test_reload_listeners import refused
from test_tls import wait_for

WORKERS = 2
HEALTH = {"interval": "200ms", "timeout": "500ms"}
PREFIX = "reload-under-load/"


def grpc_config(servers, members, listeners, limits):
    return {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}] +
                     [{"name": n, "address": f"{HOST}:0"} for n in listeners],
        "workers": WORKERS,
        "cluster": {"members": [{"name": n, "address": servers[n].address} for n in members],
                    "health_check": HEALTH},
        "limits": limits,
        "log": {"level": "info", "access_log": False},
    }


def etcd_config(etcd, members, listeners, limits):
    return {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}] +
                     [{"name": n, "address": f"{HOST}:0"} for n in listeners],
        "workers": WORKERS,
        "cluster": {"kind": "etcd",
                    "members": [{"name": m.name, "address": m.endpoint} for m in etcd.members
                                if m.name in members],
                    "health_check": HEALTH},
        "limits": limits,
        "log": {"level": "info", "access_log": False},
    }


class Loop(threading.Thread):
    """Runs step() until stopped; records every failure."""

    def __init__(self, name, step):
        super().__init__(name=name, daemon=True)
        self.step = step
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.step()
                self.ok += 1
            except Exception as e:  # noqa: BLE001  (every failure is reported by the test)
                self.failures.append(f"{type(e).__name__}: {e}")
                if len(self.failures) > 20:
                    return

    def stop(self):
        self.stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), f"{self.name} did not stop"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    with start_cluster(tmp_path_factory) as c:
        yield c


def test_five_reloads_under_load_fail_nothing(gen, etcd, tmp_path):  # noqa: F811
    pb2, pb2_grpc, gen_dir = gen
    servers = {s.name: s for s in start_servers(gen_dir, ["s1", "s2", "s3", "s4"])}
    a = b = watch = None
    loops = []
    channels = []
    try:
        a = Sidemux(sidemux_binary(), tmp_path, grpc_config(servers, ["s1", "s2"], ["old"], {}), name="grpc")
        b = Sidemux(sidemux_binary(), tmp_path, etcd_config(etcd, ["m1", "m2"], [], {}), name="etcd")
        a.start()
        b.start()
        wait_members_up(a, ["s1", "s2"], 10.0)
        wait_members_up(b, ["m1", "m2"], 10.0)
        b_endpoint = f"{HOST}:{b.port}"
        old_port = a.port_of("old")

        # The Watch starts after a known revision, so it sees every later put
        # whenever it registers.
        first = etcdctl(b_endpoint, "put", PREFIX + "start", "0", "-w", "json")
        assert first.ok, first
        rev = json.loads(first.stdout)["header"]["revision"]
        watch = etcdctl_popen(b_endpoint, "watch", "--prefix", PREFIX, f"--rev={rev + 1}")
        reader = LineReader(watch)

        puts = []

        def put():
            key = f"{PREFIX}{len(puts):04d}"
            res = etcdctl(b_endpoint, "put", key, f"v{len(puts)}", timeout=15)
            assert res.ok, res
            puts.append(key)
            time.sleep(0.05)  # pacing: a few puts per reload, not a flood of etcdctl processes

        def unary(stub):
            def call():
                stub.Unary(pb2.Msg(seq=1), timeout=10)
            return call

        for i in range(3):
            ch = channel(a.port)
            channels.append(ch)
            loops.append(Loop(f"client{i}", unary(pb2_grpc.EchoStub(ch))))

        bidi_ch = channel(a.port)
        channels.append(bidi_ch)
        requests = []
        cond = threading.Condition()

        def request_iter():
            sent = 0
            while True:
                with cond:
                    cond.wait_for(lambda: len(requests) > sent, timeout=30)
                    if len(requests) <= sent or requests[sent] is None:
                        return
                    item = requests[sent]
                sent += 1
                yield item

        responses = pb2_grpc.EchoStub(bidi_ch).Bidi(request_iter(), timeout=300)

        def round_trip():
            with cond:
                seq = len(requests)
                requests.append(pb2.Msg(seq=seq, text=f"r{seq}"))
                cond.notify_all()
            pong = next(responses)
            assert (pong.seq, pong.text) == (seq, f"r{seq}"), pong
            time.sleep(0.02)

        bidi = Loop("bidi", round_trip)
        putter = Loop("puts", put)
        loops += [bidi, putter]
        for loop in loops:
            loop.start()

        def progress():
            return [loop.ok for loop in loops]

        def wait_progress(what):
            """Every loop made progress since the last reload (or failed: reported below)."""
            before = progress()
            wait_for(progress, lambda now: all(n > b0 + 2 for n, b0 in zip(now, before)) or
                     any(loop.failures for loop in loops), timeout=30, what=f"progress after {what}")

        wait_progress("start")
        steps = [
            ("add members", ["s1", "s2", "s3"], ["old"], {}, ["m1", "m2", "m3"], [], {}),
            ("remove members", ["s2", "s3"], ["old"], {}, ["m1", "m2"], [], {"max_concurrent_streams": 64}),
            ("replace a member", ["s3", "s4"], ["old"], {}, ["m1", "m2", "m3"], [], {}),
            ("limits", ["s3", "s4"], ["old"], {"max_concurrent_streams": 64, "idle_timeout": "2m"},
             ["m1", "m2"], [], {"max_concurrent_streams": 32}),
            ("listeners", ["s3", "s4"], ["new"], {"max_concurrent_streams": 64}, ["m1", "m2"], ["new"], {}),
        ]
        for generation, (what, a_members, a_listeners, a_limits, b_members, b_listeners, b_limits) in \
                enumerate(steps, start=2):
            reload(a, grpc_config(servers, a_members, a_listeners, a_limits), generation)
            reload(b, etcd_config(etcd, b_members, b_listeners, b_limits), generation)
            wait_members_up(a, a_members, 10.0)
            wait_progress(what)

        # The added listeners serve; the removed one refuses.
        a.wait_listening(["new"])
        b.wait_listening(["new"])
        assert http_request(a.port_of("new"), "/livez").status == 200
        assert http_request(b.port_of("new"), "/livez").status == 200
        wait_for(lambda: refused(old_port), bool, timeout=10, what="the removed listener refuses connections")
        for loop in loops:
            loop.stop()

        failures = {loop.name: loop.failures for loop in loops if loop.failures}
        assert not failures, failures
        counts = {loop.name: loop.ok for loop in loops}
        assert all(n > 10 for n in counts.values()), counts

        # The bidi stream is the one it was at the start and ends cleanly.
        with cond:
            requests.append(None)
            cond.notify_all()
        assert list(responses) == [] and responses.code() == grpc.StatusCode.OK

        # The Watch saw every put, in order, and is still running.
        deadline = time.monotonic() + 20
        events = [read_watch_event(reader, deadline) for _ in puts]
        assert [e[1] for e in events] == puts, events
        assert all(e[0] == "PUT" for e in events)
        assert watch.poll() is None, f"watch exited {watch.returncode}: {stderr_of(watch)}"

        for sm in (a, b):
            m = sm.metrics()
            assert m.value("sidemux_config_generation") == 1 + len(steps)
            assert m.sum("sidemux_config_reloads_total", result="success") == len(steps)
            assert m.sum("sidemux_config_reloads_total", result="failure") == 0
        print(f"reload under load: {counts} calls; {len(puts)} puts seen by the Watch")
        for ch in channels:
            ch.close()
        stop_process(watch, timeout=5)
        assert a.stop() == 0 and b.stop() == 0
    finally:
        for loop in loops:
            loop.stop_event.set()
        for ch in channels:
            ch.close()
        if watch is not None:
            stop_process(watch, timeout=5)
        for sm in (a, b):
            if sm is not None:
                sm.kill_if_running()
        for s in servers.values():
            s.stop()

"""Fault paths on the member side (issue 14): no replay of a request a member
received, no ejection for what a client did, ejection capped at half the
members, frozen members found behind quiet streams, 1xx answers, grpc-timeout
towards the member, the header list bound announced to members.

Members are real (grpcio echo servers, a 3-member etcd cluster) except where a
member must misbehave on purpose: those are python-h2 servers (h2_member.py).
"""

import os
import signal
import threading
import time

import grpc
import pytest

from conftest import HOST, H2Client
from etcd_cluster import etcdctl
from h2_member import H2TestMember
from test_grpc_forwarding import FakeMember, gen, start_servers  # noqa: F401  (gen is a fixture)
from test_member_health import (INTERVAL, MARGIN, RANGE_FOO_SERIALIZABLE, TIMEOUT,  # noqa: F401  (etcd: fixture)
                                UNHEALTHY_THRESHOLD, channel, debug_members, etcd, hc_config, log_tail,
                                resume_and_stop, wait_for, wait_up)

HEALTH_PATH = "/grpc.health.v1.Health/Check"
SERVING = b"\x00\x00\x00\x00\x02\x08\x01"


def ejections(sm):
    return [e for e in sm.log_lines() if e.get("msg") == "member ejected"]


# --------------------------------------------------------------------------
# 1. A member that takes the bytes but never sends SETTINGS


class SilentMember(H2TestMember):
    """Accepts, reads and parses what comes (python h2 as a server), never writes a byte.

    `received` holds the x-call-id of every request whose HEADERS arrived.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.received = set()
        super().__init__()

    def _serve(self, sock):
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        try:
            while not self.stopping:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived) and dict(ev.headers).get(":path") != HEALTH_PATH:
                        with self.lock:
                            self.received.add(dict(ev.headers).get("x-call-id"))
        except Exception:  # noqa: BLE001 - sidemux closing the connection ends the thread
            return
        finally:
            sock.close()


def test_request_sent_to_a_member_without_settings_is_not_replayed(gen, sidemux_factory):
    pb2, pb2_grpc, gen_dir = gen
    servers = start_servers(gen_dir, ("s1",))
    silent = SilentMember()
    ch = None
    try:
        # The silent member is unknown (eligible) until its first health check
        # fails, which takes connect_timeout: the calls of that first half
        # second go to it too, round-robin.
        sm = sidemux_factory(hc_config([("silent", silent.address), ("s1", servers[0].address)], workers=1,
                                       balance="round_robin", connect_timeout="500ms",
                                       health_check={"interval": "5s", "timeout": "3s"}))
        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        results = {}
        lock = threading.Lock()
        counter = iter(range(10 ** 6))
        t_end = time.monotonic() + 1.5

        def run():
            while time.monotonic() < t_end:
                i = next(counter)
                try:
                    r = stub.Unary(pb2.Msg(seq=i), timeout=10, metadata=(("x-call-id", str(i)),))
                    out = ("ok", r.server)
                except grpc.RpcError as e:
                    out = (e.code(), e.details())
                with lock:
                    results[str(i)] = out

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        with silent.lock:
            received = set(silent.received)
    finally:
        if ch is not None:
            ch.close()
        silent.close()
        for s in servers:
            s.stop()
    served_by_s1 = {k for k, v in results.items() if v == ("ok", "s1")}
    both = sorted(received & served_by_s1, key=int)
    print(f"{len(results)} calls; silent member received {len(received)}; s1 served {len(served_by_s1)}; "
          f"received by both: {both[:10]}")
    assert received, "no call reached the silent member: the test did not exercise it"
    assert not both, f"calls received by the silent member were replayed on s1: {both[:10]}"
    for k in received:
        assert results[k][0] == grpc.StatusCode.UNAVAILABLE, (k, results[k])
    assert len(served_by_s1) >= 1


# --------------------------------------------------------------------------
# 2. Malformed requests against a real etcd cluster


def test_malformed_requests_do_not_eject_etcd_members(etcd, sidemux_factory):
    names = etcd.names
    sm = sidemux_factory(hc_config([(m.name, m.endpoint) for m in etcd.members], workers=1,
                                   outlier={"consecutive_failures": 5, "ejection_time": "30s"}))
    wait_up(sm, names)
    path = "/etcdserverpb.KV/Range"
    frame = b"\x00" + len(RANGE_FOO_SERIALIZABLE).to_bytes(4, "big") + RANGE_FOO_SERIALIZABLE
    grpc_ct = [("content-type", "application/grpc"), ("te", "trailers")]
    kinds = {
        "GET": ("GET", grpc_ct),
        "bad -bin": ("POST", grpc_ct + [("x-token-bin", "!!not base64!!")]),
        "text/plain": ("POST", [("content-type", "text/plain"), ("te", "trailers")]),
        "bad grpc-timeout": ("POST", grpc_ct + [("grpc-timeout", "10x")]),
    }
    answers = {}
    with H2Client(sm.port) as c:
        sids = {}
        for i in range(40):
            kind = list(kinds)[i % 4]
            method, headers = kinds[kind]
            sids[c.request(path, method, headers, frame)] = kind
        c.wait(list(sids), timeout=15)
        for sid, kind in sids.items():
            st = c.streams[sid]
            answers.setdefault(kind, set()).add((st.status, st.header("grpc-status")))
    print(f"malformed answers: {answers}")

    for i in range(6):
        r = etcdctl(f"{HOST}:{sm.port}", "put", f"k{i}", f"v{i}")
        assert r.ok, r
        r = etcdctl(f"{HOST}:{sm.port}", "get", f"k{i}")
        assert r.ok and f"v{i}" in r.stdout, r
    before = sm.metrics()
    ch = channel(sm.port)
    try:
        rng = ch.unary_unary("/etcdserverpb.KV/Range", request_serializer=None, response_deserializer=None)
        for _ in range(60):
            rng(RANGE_FOO_SERIALIZABLE, timeout=5)
    finally:
        ch.close()
    after = sm.metrics()
    taken = {n: after.sum("sidemux_upstream_streams_total", member=n)
             - before.sum("sidemux_upstream_streams_total", member=n) for n in names}
    print(f"streams per member after the malformed ones: {taken}")
    assert not ejections(sm), ejections(sm)
    assert all(v >= 5 for v in taken.values()), taken
    # what cannot be gRPC is answered by sidemux itself
    assert answers["GET"] == {(405, "13")}, answers
    assert answers["text/plain"] == {(415, "13")}, answers
    assert answers["bad grpc-timeout"] == {(200, "13")}, answers


# --------------------------------------------------------------------------
# 3. Ejection is capped: at most half the members, never the only one


@pytest.mark.parametrize("count", [1, 2])
def test_resetting_members_ejection_capped_at_half(gen, sidemux_factory, count):
    """Every stream fails with a member reset: of two members at most one is ejected, one is never."""
    pb2, pb2_grpc, _ = gen
    fakes = [FakeMember("reset", reset_code=2) for _ in range(count)]
    names = [f"m{i}" for i in range(count)]
    ch = None
    try:
        sm = sidemux_factory(hc_config([(n, f.address) for n, f in zip(names, fakes)], workers=1,
                                       balance="round_robin",
                                       outlier={"consecutive_failures": 3, "ejection_time": "30s"}))
        wait_up(sm, names)
        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        codes = []
        for i in range(20):
            try:
                stub.Unary(pb2.Msg(seq=i), timeout=5)
                codes.append("ok")
            except grpc.RpcError as e:
                codes.append(e.code())
        streams = [f.streams for f in fakes]
    finally:
        if ch is not None:
            ch.close()
        for f in fakes:
            f.close()
    lines = ejections(sm)
    print(f"{count} member(s): codes {codes}; streams {streams}; ejections {lines}")
    assert len(lines) == count // 2, f"expected {count // 2} member(s) ejected: {lines}"
    assert sm.wait_log(lambda e: e.get("msg", "").startswith("member not ejected"), timeout=1), log_tail(sm)
    # a member is left to take every stream: no call got UNAVAILABLE
    assert codes == [grpc.StatusCode.INTERNAL] * 20, codes
    assert sum(streams) == 20, streams


# --------------------------------------------------------------------------
# 4. A frozen member behind quiet streams on several connections


def test_sigstop_member_fails_quiet_streams_on_every_connection(gen, sidemux_factory):
    pb2, pb2_grpc, gen_dir = gen
    servers = start_servers(gen_dir, ("s1",))
    keepalive_interval, keepalive_timeout = 1.0, 1.0
    ch = None
    try:
        sm = sidemux_factory(dict(hc_config([("s1", servers[0].address)], workers=1,
                                            max_streams_per_connection=2,
                                            outlier={"consecutive_failures": 100000}),
                                  limits={"keepalive_interval": "1s", "keepalive_timeout": "1s"}))
        wait_up(sm, ["s1"])
        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        calls = [stub.Slow.future(pb2.SlowRequest(ms=20000, call_id=f"q{i}"), timeout=25) for i in range(4)]
        wait_for(lambda: debug_members(sm)["s1"]["active_streams"] >= 4, 5, what="4 Slow calls open")
        conns = sm.metrics().value("sidemux_upstream_connections_active", member="s1")
        # quiet long enough for the one keepalive PING of this quiet spell to be answered
        time.sleep(keepalive_interval + 0.5)
        t_stop = time.monotonic()
        os.kill(servers[0].pid, signal.SIGSTOP)
        bound = INTERVAL + UNHEALTHY_THRESHOLD * TIMEOUT + keepalive_interval + keepalive_timeout + MARGIN
        results = []
        for f in calls:
            try:
                f.result(timeout=max(0.1, t_stop + bound + 2 - time.monotonic()))
                results.append(("ok", time.monotonic() - t_stop))
            except grpc.FutureTimeoutError:
                results.append(("still open", time.monotonic() - t_stop))
            except grpc.RpcError as e:
                results.append((e.code(), time.monotonic() - t_stop))
        for f in calls:
            f.cancel()
    finally:
        if ch is not None:
            ch.close()
        for s in servers:
            resume_and_stop(s)
    print(f"SIGSTOP with 4 quiet streams on {conns} connections: {results} (bound {bound:.2f}s)")
    assert conns >= 2, f"the 4 streams were not spread over 2 connections: {conns}"
    for r in results:
        assert r[0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), results
        assert r[1] <= bound, f"a quiet stream failed {r[1]:.2f}s after SIGSTOP (bound {bound:.2f}s): {results}"


# --------------------------------------------------------------------------
# 5. Item 7: 1xx answers, grpc-timeout towards the member, header list bound


class ScriptedMember(H2TestMember):
    """A python-h2 gRPC member answering sidemuxtest.Echo/Unary with an empty Msg.

    informational: each answer starts with 100 Continue and 103 Early Hints.
    refuse_after:  every call stream is refused (REFUSED_STREAM) after that
                   many seconds instead of answered.
    Records each call's grpc-timeout by x-call-id, and sidemux's
    SETTINGS_MAX_HEADER_LIST_SIZE.
    """

    def __init__(self, informational=False, refuse_after=None):
        self.informational = informational
        self.refuse_after = refuse_after
        self.lock = threading.Lock()
        self.timeouts = {}
        self.max_header_list_size = []
        super().__init__()

    def _serve(self, sock):
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        pending = []  # (due, stream id)
        paths = {}
        try:
            sock.sendall(conn.data_to_send())
            sock.settimeout(0.05)
            while not self.stopping:
                try:
                    data = sock.recv(65536)
                    if not data:
                        return
                except TimeoutError:
                    data = b""
                for ev in conn.receive_data(data) if data else []:
                    if isinstance(ev, h2.events.RemoteSettingsChanged):
                        with self.lock:
                            self.max_header_list_size.append(conn.remote_settings.max_header_list_size)
                    elif isinstance(ev, h2.events.RequestReceived):
                        h = dict(ev.headers)
                        paths[ev.stream_id] = h.get(":path")
                        if h.get(":path") != HEALTH_PATH:
                            with self.lock:
                                self.timeouts[h.get("x-call-id")] = h.get("grpc-timeout")
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        sid = ev.stream_id
                        if paths.get(sid) != HEALTH_PATH and self.refuse_after is not None:
                            pending.append((time.monotonic() + self.refuse_after, sid))
                            continue
                        if self.informational and paths.get(sid) != HEALTH_PATH:
                            conn.send_headers(sid, [(":status", "100")])
                            conn.send_headers(sid, [(":status", "103"), ("link", "</x>; rel=preload")])
                        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                                ("x-final", "yes")])
                        conn.send_data(sid, SERVING if paths.get(sid) == HEALTH_PATH else b"\x00" * 5)
                        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
                now = time.monotonic()
                for due, sid in [p for p in pending if p[0] <= now]:
                    pending.remove((due, sid))
                    conn.reset_stream(sid, 7)  # REFUSED_STREAM
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except Exception:  # noqa: BLE001 - sidemux closing the connection ends the thread
            return
        finally:
            sock.close()


def test_member_informational_responses_do_not_become_trailers(gen, sidemux_factory):
    pb2, pb2_grpc, _ = gen
    member = ScriptedMember(informational=True)
    ch = None
    try:
        sm = sidemux_factory(hc_config([("x", member.address)], workers=1))
        wait_up(sm, ["x"])
        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        replies = []
        for i in range(3):
            reply, call = stub.Unary.with_call(pb2.Msg(seq=i), timeout=5)
            replies.append((reply, dict(call.initial_metadata())))
        with member.lock:
            announced = list(member.max_header_list_size)
    finally:
        if ch is not None:
            ch.close()
        member.close()
    print(f"after 1xx: {replies}; announced max_header_list_size {announced}")
    for reply, md in replies:
        assert reply == pb2.Msg(), reply
        assert md.get("x-final") == "yes", md
        assert "link" not in md, md
    # the bound sidemux holds member headers to (limits.max_header_list_size) is announced
    assert announced and all(v == 65536 for v in announced), announced


def test_grpc_timeout_towards_the_member_is_the_time_left(gen, sidemux_factory):
    pb2, pb2_grpc, _ = gen
    slow_refuser = ScriptedMember(refuse_after=1.0)
    recorder = ScriptedMember()
    ch = None
    try:
        sm = sidemux_factory(hc_config([("r", slow_refuser.address), ("x", recorder.address)], workers=1,
                                       balance="round_robin"))
        wait_up(sm, ["r", "x"])
        ch = channel(sm.port)
        stub = pb2_grpc.EchoStub(ch)
        for i in range(4):
            stub.Unary(pb2.Msg(seq=i), timeout=5, metadata=(("x-call-id", str(i)),))
        with slow_refuser.lock, recorder.lock:
            first, second = dict(slow_refuser.timeouts), dict(recorder.timeouts)
    finally:
        if ch is not None:
            ch.close()
        slow_refuser.close()
        recorder.close()
    print(f"grpc-timeout at the refusing member {first}; at the member that answered {second}")

    def seconds(v):
        units = {"H": 3600, "M": 60, "S": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9}
        return int(v[:-1]) * units[v[-1]]

    retried = [k for k in first if k in second]
    assert retried, "no call was refused and retried"
    for k in retried:
        # (grpc core rounds the timeout it sends up a little, to few distinct values)
        assert seconds(first[k]) <= 5.1, first
        # refused after 1 s: the retry carries what is left, not the client's 5 s again
        assert seconds(second[k]) <= seconds(first[k]) - 0.9, (k, first[k], second[k])

"""Listeners follow the config on reload (SPEC "Signals and lifecycle"): an
added listener is bound on every worker and serves gRPC and HTTP/1; a removed
one refuses new connections while its open streams finish; an address change
is a removal plus an addition; a TLS block change on the same address keeps
the socket and new handshakes use it; a listener that cannot be bound fails
the whole reload, and nothing of that generation is applied."""

import errno
import os
import queue
import signal
import socket

import grpc
import pytest

from conftest import HOST, H2Client, connect, dead_port, http_request, wait_members_up
from test_grpc_forwarding import channel, cluster_config, gen, start_servers  # noqa: F401
from test_reload import reload, served_by
from test_tls import certs, client_context, peer_cert, tls_connect, tls_get, wait_for  # noqa: F401

WORKERS = 2


@pytest.fixture
def servers(gen):  # noqa: F811
    servers = {s.name: s for s in start_servers(gen[2], ["s1", "s2"])}
    yield servers
    for s in servers.values():
        s.stop()


def config(servers, members, listeners, **extra):
    cfg = cluster_config([(n, servers[n].address) for n in members],
                         health_check={"interval": "200ms", "timeout": "150ms"})
    cfg["workers"] = WORKERS
    cfg["listeners"] = [{"name": "client", "address": f"{HOST}:0"}] + listeners
    cfg["log"] = {"level": "debug", "access_log": False}
    cfg.update(extra)
    return cfg


def refused(port):
    """True when nothing accepts on port (every worker closed its socket)."""
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return False
    except OSError as e:
        return e.errno == errno.ECONNREFUSED


class Bidi:
    """One Echo.Bidi call driven message by message."""

    def __init__(self, stub, pb2):
        self.pb2 = pb2
        self.requests = queue.Queue()
        self.responses = stub.Bidi(self._iter(), timeout=60)
        self.seq = 0

    def _iter(self):
        while True:
            item = self.requests.get(timeout=30)
            if item is None:
                return
            yield item

    def round_trip(self):
        self.seq += 1
        self.requests.put(self.pb2.Msg(seq=self.seq, text=f"r{self.seq}"))
        pong = next(self.responses)
        assert (pong.seq, pong.text) == (self.seq, f"r{self.seq}")
        return pong

    def finish(self):
        self.requests.put(None)
        rest = list(self.responses)
        return rest, self.responses.code()

    def cancel(self):
        self.requests.put(None)
        self.responses.cancel()


def advertised_streams(port):
    with H2Client(port) as c:
        c.wait_settings()
        return c.conn.remote_settings.max_concurrent_streams


def test_added_listener_serves_grpc_and_http1(gen, servers, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    sm = sidemux_factory(config(servers, ["s1"], []))
    wait_members_up(sm, ["s1"], 10.0)
    client_port = sm.port
    # A keep-alive HTTP/1 connection on the running listener, across the reload.
    kept = connect(client_port)
    try:
        kept.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in kept.recv(4096).split(b"\r\n")[0]

        reload(sm, config(servers, ["s1"], [{"name": "extra", "address": f"{HOST}:0"}]), 2)
        sm.wait_listening(["extra"])
        port = sm.port_of("extra")
        ch = channel(port)
        try:
            assert served_by(pb2_grpc.EchoStub(ch), pb2, 10) == ["s1"] * 10
        finally:
            ch.close()
        resp = http_request(port, "/livez")
        assert resp.status == 200 and resp.body == b"ok", resp
        m = sm.metrics()
        assert m.sum("sidemux_connections_accepted_total", listener="extra", protocol="h2") >= 1
        assert m.sum("sidemux_connections_accepted_total", listener="extra", protocol="http1") >= 1
        # Bound on every worker, and every worker accepts on its socket: the
        # kernel spreads new connections over the SO_REUSEPORT group, and one
        # socket nobody accepts on would hang some of these.
        workers = {e.get("worker") for e in sm.log_lines()
                   if e.get("msg") == "listener accepting" and e.get("listener") == "extra"}
        assert workers == set(range(WORKERS)), workers
        for _ in range(40):
            assert http_request(port, "/livez", timeout=5).status == 200
        # The running listener kept its socket: same port, and the connection
        # accepted before the reload still answers.
        assert sm.port == client_port
        kept.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in kept.recv(4096).split(b"\r\n")[0]
        assert sm.metrics().sum("sidemux_connections_accepted_total", listener="client", protocol="http1") >= 1
    finally:
        kept.close()
    assert sm.stop() == 0


def test_removed_listener_refuses_new_connections_while_its_stream_finishes(gen, servers, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    old = {"name": "old", "address": f"{HOST}:0"}
    sm = sidemux_factory(config(servers, ["s1"], [old], limits={"drain_timeout": "30s"}))
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("old")
    ch = channel(port)
    bidi = Bidi(pb2_grpc.EchoStub(ch), pb2)
    try:
        bidi.round_trip()
        reload(sm, config(servers, ["s1"], [], limits={"drain_timeout": "30s"}), 2)
        # Every worker closes its socket once it applied the generation.
        wait_for(lambda: refused(port), bool, timeout=10, what="the removed listener refuses connections")
        assert sm.wait_log(lambda e: e.get("msg") == "listener removed; draining its connections"
                           and e.get("listener") == "old", timeout=5) is not None
        # The open stream goes on well past the final GOAWAY (1 s after the notice).
        for _ in range(20):
            bidi.round_trip()
        assert wait_for(lambda: refused(port), bool, what="still refused")
        rest, code = bidi.finish()
        assert rest == [] and code == grpc.StatusCode.OK
        # Once its last stream ended, the drained connection closes.
        wait_for(lambda: sm.metrics().sum("sidemux_connections_active", listener="old"), lambda v: v == 0,
                 timeout=10, what="the removed listener's connections closed")
        # The remaining listener serves as before.
        ch2 = channel(sm.port)
        try:
            assert served_by(pb2_grpc.EchoStub(ch2), pb2, 5) == ["s1"] * 5
        finally:
            ch2.close()
    finally:
        bidi.cancel()
        ch.close()
    assert sm.stop() == 0


def test_address_change_moves_the_listener(servers, sidemux_factory):
    sm = sidemux_factory(config(servers, ["s1"], [{"name": "moving", "address": f"{HOST}:0"}]))
    before = sm.port_of("moving")
    after = dead_port()
    reload(sm, config(servers, ["s1"], [{"name": "moving", "address": f"{HOST}:{after}"}]), 2)
    wait_for(lambda: refused(before), bool, timeout=10, what="the old address refuses connections")
    assert http_request(after, "/livez").status == 200


def test_tls_block_change_keeps_the_socket(certs, servers, sidemux_factory):  # noqa: F811
    a, b = certs.server, certs.server_b
    tls = {"name": "tls", "address": f"{HOST}:0"}
    sm = sidemux_factory(config(servers, ["s1"], [dict(tls, tls={"cert_file": a.cert, "key_file": a.key})]))
    port = sm.port_of("tls")
    old = tls_connect(port, client_context(certs))
    try:
        assert peer_cert(port, certs)[0] == a.serial_hex
        # Another pair of files (and a plaintext fallback): the same socket, new handshakes use it.
        changed = dict(tls, tls={"cert_file": b.cert, "key_file": b.key, "require_tls": False})
        reload(sm, config(servers, ["s1"], [changed]), 2)
        wait_for(lambda: peer_cert(port, certs)[0], lambda s: s == b.serial_hex, timeout=10,
                 what="the new certificate on new handshakes")
        assert http_request(port, "/livez").status == 200  # plaintext is now accepted too
        assert tls_get(old, "/livez").status == 200  # the connection made before goes on
        assert not [e for e in sm.log_lines() if e.get("msg") == "listener retired"]
        assert len([e for e in sm.log_lines() if e.get("msg") == "listening" and e.get("listener") == "tls"]) == 1
    finally:
        old.close()


def test_unbindable_listener_fails_the_whole_reload(gen, servers, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    first = config(servers, ["s1"], [], limits={"max_concurrent_streams": 100})
    sm = sidemux_factory(first)
    wait_members_up(sm, ["s1"], 10.0)
    free_port = dead_port()
    # Held without SO_REUSEPORT: sidemux's bind fails with EADDRINUSE.
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen(1)
    held = holder.getsockname()[1]
    try:
        bad = config(servers, ["s2"], [{"name": "fine", "address": f"{HOST}:{free_port}"},
                                       {"name": "blocked", "address": f"{HOST}:{held}"}],
                     limits={"max_concurrent_streams": 50})
        sm.write_config(bad)
        os.kill(sm.pid, signal.SIGHUP)
        wait_for(lambda: sm.metrics().sum("sidemux_config_reloads_total", result="failure"), lambda n: n == 1,
                 timeout=10, what="a failed reload")
        line = sm.wait_log(lambda e: e.get("msg") == "config reload failed; keeping the running config"
                           and "blocked" in str(e.get("error")), timeout=5)
        assert line is not None and "Address already in use" in line["error"] and line["level"] == "error", line
        m = sm.metrics()
        assert m.value("sidemux_config_generation") == 1
        assert m.sum("sidemux_config_reloads_total", result="success") == 0
        # Nothing of it applied: members, limits and listeners as before.
        assert m.series("sidemux_member_up") and m.value("sidemux_member_up", member="s2") is None
        ch = channel(sm.port)
        try:
            assert served_by(pb2_grpc.EchoStub(ch), pb2, 10) == ["s1"] * 10
        finally:
            ch.close()
        assert advertised_streams(sm.port) == 100
        assert refused(free_port), "the listener bound before the failure was left open"
    finally:
        holder.close()
    # The same file loads once the address is free.
    reload(sm, bad, 2)
    sm.wait_listening(["fine", "blocked"])
    assert http_request(held, "/livez").status == 200
    assert advertised_streams(sm.port) == 50
    wait_members_up(sm, ["s2"], 10.0)

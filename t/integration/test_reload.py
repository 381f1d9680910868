"""SIGHUP with a new member list: new members join, removed members take no
new streams while their open streams finish, unchanged members keep their
connections (SPEC "Signals and lifecycle")."""

import os
import signal
import time

import pytest

from conftest import wait_members_up
from test_grpc_forwarding import (channel, cluster_config, find_events, gen, runner,  # noqa: F401  (fixtures)
                                  start_servers)


def reload(sm, config, generation):
    sm.write_config(config)
    os.kill(sm.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sm.metrics().value("sidemux_config_generation") == generation:
            return
        time.sleep(0.02)
    pytest.fail(f"config generation {generation} not reached")


def served_by(stub, pb2, n):
    return [stub.Unary(pb2.Msg(seq=i), timeout=5).server for i in range(n)]


def test_members_join_and_leave_without_dropping_a_stream(gen, runner):
    pb2, pb2_grpc, gen_dir = gen
    servers = {s.name: s for s in start_servers(gen_dir, ["s1", "s2", "s3"])}
    try:
        fast_checks = {"health_check": {"interval": "200ms", "timeout": "150ms"}}
        before = cluster_config([(n, servers[n].address) for n in ("s1", "s2")], **fast_checks)
        before["workers"] = 1  # one pool per member, so connection counts are exact
        sm = runner.start(before, wait_members=["s1", "s2"])
        ch = channel(sm.port)
        try:
            stub = pb2_grpc.EchoStub(ch)
            assert set(served_by(stub, pb2, 20)) == {"s1", "s2"}

            # A slow call pinned to s1 (the only member) outlives the reload
            # that removes s1.
            only_s1 = cluster_config([("s1", servers["s1"].address)], **fast_checks)
            only_s1["workers"] = 1
            reload(sm, only_s1, 2)
            slow = stub.Slow.future(pb2.SlowRequest(ms=1500, call_id="across-reload"), timeout=10)
            started = find_events(gen, {"s1": servers["s1"]}, "across-reload", "started", 5)
            assert started and started[0] == "s1", "the slow call did not reach s1"

            after = cluster_config([(n, servers[n].address) for n in ("s2", "s3")], **fast_checks)
            after["workers"] = 1
            reload(sm, after, 3)
            wait_members_up(sm, ["s2", "s3"], 10.0)
            t0 = time.monotonic()
            got = served_by(stub, pb2, 30)
            assert set(got) == {"s2", "s3"}, got  # s1 takes no new stream, s3 joined

            reply = slow.result(timeout=10)
            assert reply.server == "s1" and reply.text == "across-reload"
            # Once its last stream ended, the retired member's connection closes.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if sm.metrics().value("sidemux_upstream_connections_active", member="s1") == 0:
                    break
                time.sleep(0.05)
            m = sm.metrics()
            assert m.value("sidemux_upstream_connections_active", member="s1") == 0
            assert m.value("sidemux_member_up", member="s1") == 0
            assert m.value("sidemux_config_reloads_total", result="success") == 2
            assert time.monotonic() - t0 < 5
        finally:
            ch.close()
        assert sm.stop() == 0
    finally:
        for s in servers.values():
            s.stop()

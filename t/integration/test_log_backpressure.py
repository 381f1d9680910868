"""Logging never blocks a loop (SPEC "Fault paths"): sidemux's stderr is a pipe
that nobody reads (a log shipper under backpressure). With the access log on,
gRPC calls keep being served, /livez answers at once, and the lines that did not
fit in the log buffer are dropped and counted in sidemux_log_lines_dropped_total.
"""

import fcntl
import json
import os
import select
import subprocess
import threading
import time

import pytest

from conftest import (http_request, parse_host_port, parse_metrics, sanitizer_report, sidemux_binary,
                      stop_process, to_yaml, wait_members_up)
from test_grpc_forwarding import channel, cluster_config, gen, start_servers  # noqa: F401

CALLS = 1500
CALL_TIMEOUT_S = 10.0   # a loop blocked on stderr never answers: each call is bounded
LIVEZ_LIMIT_S = 1.0
START_TIMEOUT_S = 10.0


class UnreadStderr:
    """sidemux with stderr a pipe of one page, read only up to the "listening" line."""

    def __init__(self, workdir, config):
        path = os.path.join(str(workdir), "sidemux.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(config))
        self.proc = subprocess.Popen([sidemux_binary(), "-c", path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.fd = self.proc.stderr.fileno()
        # The smallest pipe the kernel allows, so a few lines fill it.
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)
        self.text = b""
        self.port = None

    def metrics(self):
        return parse_metrics(http_request(self.port, "/metrics", timeout=5).body.decode())

    def read_until(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for line in self.text.split(b"\n"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if predicate(entry):
                    return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                pytest.fail(f"sidemux: no such line within {timeout}s; stderr:\n{self.text.decode(errors='replace')}")
            r, _, _ = select.select([self.fd], [], [], remaining)
            if r:
                self.text += os.read(self.fd, 65536)

    def drain_in_background(self):
        """Reads stderr to EOF on a thread from now on (joined by stop())."""
        def run():
            while chunk := os.read(self.fd, 65536):
                self.text += chunk
        self.reader = threading.Thread(target=run, daemon=True)
        self.reader.start()

    def stop(self):
        code = stop_process(self.proc)
        self.reader.join(timeout=10)
        return code


@pytest.fixture(scope="module")
def servers(gen):  # noqa: F811
    started = start_servers(gen[2], names=("s1", "s2"))
    yield started
    for s in started:
        s.stop()


def test_a_stderr_nobody_reads_costs_dropped_lines_not_the_loop(gen, servers, tmp_path):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    config = cluster_config([(s.name, s.address) for s in servers])
    config["log"] = {"level": "info", "access_log": True}
    sm = UnreadStderr(tmp_path, config)
    try:
        listening = sm.read_until(lambda e: e.get("msg") == "listening", START_TIMEOUT_S)
        port = sm.port = parse_host_port(listening["address"])[1]
        # From here on nobody reads stderr.
        wait_members_up(sm, ["s1", "s2"], 10.0)

        ch = channel(port)
        try:
            stub = pb2_grpc.EchoStub(ch)
            for i in range(CALLS):
                reply = stub.Unary(pb2.Msg(seq=i), timeout=CALL_TIMEOUT_S)
                assert reply.seq == i
        finally:
            ch.close()

        start = time.monotonic()
        livez = http_request(port, "/livez", timeout=LIVEZ_LIMIT_S)
        took = time.monotonic() - start
        assert livez.status == 200 and took < LIVEZ_LIMIT_S, (livez.status, took)

        dropped = sm.metrics().value("sidemux_log_lines_dropped_total")
        assert dropped > 0, "1,500 access lines into a full pipe, yet none dropped"
        debug_vars = json.loads(http_request(port, "/debug/vars", timeout=5).body)
        assert debug_vars["counters"]["sidemux_log_lines_dropped_total"] >= dropped
    finally:
        sm.drain_in_background()
        code = sm.stop()

    lines = sm.text.decode().splitlines()
    report = sanitizer_report(lines)
    assert not report, report
    assert code == 0, "\n".join(lines[-20:])
    entries = [json.loads(line) for line in lines]  # every line whole: a split one would not parse
    access = [e for e in entries if e["msg"] == "access"]
    assert 0 < len(access) <= CALLS and len(access) + dropped >= CALLS, (len(access), dropped)
    # What was queued at SIGTERM came out before the process exited.
    assert entries[-1]["msg"] == "stopped", entries[-3:]

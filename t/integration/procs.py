"""Stopping the processes the integration tests start (sidemux, etcd, etcdctl, echo servers).

Kept out of conftest.py so that helper modules and packages that may run
outside pytest (grpc_testsvc, etcd_cluster) can use it; conftest re-exports it.
"""

import os
import random
import signal
import socket
import subprocess

STOP_TIMEOUT = 10.0  # SIGTERM grace period before SIGKILL


def stop_process(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Signal proc by PID, wait up to timeout, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=timeout)
    return proc.returncode


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count, host="127.0.0.1"):
    """count distinct ports on host that were free a moment ago, all below the
    kernel's ephemeral range. A server a test stops and starts again on the
    same port must not find it taken by a client's outgoing connection (a
    TIME_WAIT left by an HTTP poll that happened to get that port as its
    source port blocks the bind): ports the kernel hands to connect() never
    fall outside that range."""
    low, _ = _ephemeral_range()
    first = max(1024, low - 20000)
    rng = random.Random()
    socks = []
    try:
        for _ in range(200 * count):
            if len(socks) == count:
                break
            s = socket.socket()
            try:
                s.bind((host, rng.randrange(first, low)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < count:
            raise RuntimeError(f"no {count} free ports below {low}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()

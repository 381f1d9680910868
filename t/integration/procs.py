"""Stopping the processes the integration tests start (sidemux, etcd, etcdctl, echo servers).

Kept out of conftest.py so that helper modules and packages that may run
outside pytest (grpc_testsvc, etcd_cluster) can use it; conftest re-exports it.
"""

import os
import signal
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

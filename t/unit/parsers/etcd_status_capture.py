"""Capture real etcdserverpb.StatusResponse bytes from Debian's etcd 3.4.

Not run by the tests: it made the vectors in etcd_status_test.cc and the seeds
in t/fuzz/corpus/etcd_status/. Re-run it after an etcd upgrade:

    /usr/bin/python3 t/unit/parsers/etcd_status_capture.py OUT_DIR

Three single-member situations, each printed with `etcdctl endpoint status
-w json` for cross-checking the decoded values:
  leader    a one-member cluster (it leads itself)
  noleader  one member of a two-member cluster after the other was stopped,
            so it has no leader ("etcdserver: no leader")
  nospace   a one-member cluster with a 1 MiB quota, filled until NOSPACE
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "integration"))
from procs import stop_process  # noqa: E402

HOST = "127.0.0.1"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def status_bytes(port):
    with grpc.insecure_channel(f"{HOST}:{port}") as ch:
        call = ch.unary_unary("/etcdserverpb.Maintenance/Status")  # raw bytes both ways
        deadline = time.monotonic() + 20
        while True:
            try:
                return call(b"", timeout=2)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def etcdctl(port, *args):
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run(["etcdctl", f"--endpoints={HOST}:{port}", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def start(tmp, name, peer, cluster, extra_args=()):
    (client,) = free_ports(1)
    args = ["etcd", "--name", name, "--data-dir", os.path.join(tmp, name),
            "--listen-client-urls", f"http://{HOST}:{client}", "--advertise-client-urls", f"http://{HOST}:{client}",
            "--listen-peer-urls", f"http://{HOST}:{peer}", "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
            "--initial-cluster", cluster, "--initial-cluster-token", f"capture-{cluster}", *extra_args]
    log = open(os.path.join(tmp, name + ".log"), "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), client


def fill_until_nospace(port):
    value = "x" * 65536
    for i in range(200):
        r = etcdctl(port, "put", f"fill{i}", value)
        if "database space exceeded" in r.stderr:  # the put that raised the alarm
            return
    raise RuntimeError("no NOSPACE alarm after 200 puts of 64 KiB")


def wait_healthy(port):
    deadline = time.monotonic() + 20
    while etcdctl(port, "endpoint", "health").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"etcd on {port} not healthy")
        time.sleep(0.2)


def wait_leaderless(port):
    """Until Status stops naming a leader (after an election timeout)."""
    deadline = time.monotonic() + 20
    while b"etcdserver: no leader" not in status_bytes(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"etcd on {port} still has a leader")
        time.sleep(0.2)


def capture(out_dir, name, port):
    data = status_bytes(port)
    with open(os.path.join(out_dir, f"real_{name}.bin"), "wb") as f:
        f.write(data)
    print(f"== {name}: {len(data)} bytes\n{data.hex()}")
    print(etcdctl(port, "endpoint", "status", "-w", "json").stdout)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        try:
            (peer,) = free_ports(1)
            proc, port = start(tmp, "leader", peer, f"leader=http://{HOST}:{peer}")
            procs.append(proc)
            wait_healthy(port)
            capture(out_dir, "leader", port)

            (peer,) = free_ports(1)
            proc, port = start(tmp, "nospace", peer, f"nospace=http://{HOST}:{peer}",
                               ["--quota-backend-bytes", str(1 << 20)])
            procs.append(proc)
            wait_healthy(port)
            fill_until_nospace(port)
            capture(out_dir, "nospace", port)

            pa, pb = free_ports(2)
            cluster = f"a=http://{HOST}:{pa},b=http://{HOST}:{pb}"
            a, port_a = start(tmp, "a", pa, cluster)
            b, _ = start(tmp, "b", pb, cluster)
            procs += [a, b]
            wait_healthy(port_a)
            stop_process(b)
            wait_leaderless(port_a)
            capture(out_dir, "noleader", port_a)
        finally:
            for p in procs:
                stop_process(p)


if __name__ == "__main__":
    main(sys.argv[1])

"""The processes of a soak run: a 3-member etcd cluster, three sidemuxtest.Echo
servers, a TLS certificate, and two sidemux instances (kind grpc in front of the
echo servers with a plaintext and a TLS listener; kind etcd in front of etcd).
Every process is started here and stopped by PID in stop(), whatever state it
is in (a SIGSTOPped member gets SIGCONT first)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import grpc_testsvc
from etcd_cluster import EtcdCluster, member_health
from procs import stop_process
from sidemux_proc import SidemuxProc
from tls_certs import Pki

HOST = "127.0.0.1"
ECHO_NAMES = ("s1", "s2", "s3")
DRAIN_TIMEOUT_S = 5.0
HEALTH = {"interval": "1s", "timeout": "1s", "unhealthy_threshold": 2, "healthy_threshold": 1}


class SoakEtcdCluster(EtcdCluster):
    """etcd as it would run on machines of its own, as far as one 2-core machine
    that also runs the clients, the echo servers and sidemux allows: its members
    at nice -10 (when permitted; nice only warns when it is not), so that their
    heartbeats are not queued behind the load generators; elections at 10x the
    heartbeat, as PEERS.md has it, with etcd's tuning for a slow network (250 ms
    heartbeats); and data on tmpfs when there is one, so that a put is not an
    fsync behind the machine's other writes. The last run before these changes
    had etcd log "server is likely overloaded" 390 times (heartbeats 60 to 280 ms
    late), which made elections and health-check timeouts that no fault caused."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        super().__init__(tempfile.mkdtemp(prefix="sidemux-soak-etcd-", dir=shm), heartbeat_ms=250, election_ms=2500)

    def member_argv(self, m, initial):
        return ["nice", "-n", "-10"] + super().member_argv(m, initial)

    def stop(self):
        super().stop()
        # The logs go with the rest of the run's; the data is dropped.
        os.makedirs(self.log_dir, exist_ok=True)
        for m in self.members:
            if os.path.exists(m.log_path):
                shutil.copy(m.log_path, self.log_dir)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _continue(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


class Topology:
    def __init__(self, binary, workdir, gen_dir):
        self.binary = binary
        self.workdir = workdir
        self.gen_dir = gen_dir
        self.pki = None
        self.cert = None
        self.cert_generation = 0
        self.etcd = None
        self.echo = {}  # name -> EchoServer
        self.sm_echo = None
        self.sm_etcd = None

    # start ----------------------------------------------------------------
    def start(self):
        self.pki = Pki(os.path.join(self.workdir, "pki"))
        self.cert = self.issue_cert()
        self.etcd = SoakEtcdCluster(os.path.join(self.workdir, "etcd"))
        self.etcd.start()
        for name in ECHO_NAMES:
            self.echo[name] = grpc_testsvc.EchoServer(name, self.gen_dir).start()
        self.sm_echo = SidemuxProc(self.binary, self.workdir, "sidemux-echo", self.echo_config())
        self.sm_echo.start()
        self.sm_etcd = SidemuxProc(self.binary, self.workdir, "sidemux-etcd", self.etcd_config())
        self.sm_etcd.start()
        # From now on the configs name the bound ports, so reloads keep the same sockets.
        for sm in (self.sm_echo, self.sm_etcd):
            for listener in sm.config["listeners"]:
                listener["address"] = f"{HOST}:{sm.port(listener['name'])}"
            sm.write_config(sm.config)
        self.sm_echo.wait_members_up(ECHO_NAMES)
        self.sm_etcd.wait_members_up(self.etcd.names)

    def issue_cert(self):
        """A new server certificate (new serial) at the same two paths, swapped in atomically."""
        self.cert_generation += 1
        fresh = self.pki.issue(f"server-{self.cert_generation}", "sidemux soak server",
                               sans=["DNS:localhost", "IP:127.0.0.1"])
        cert_path = os.path.join(self.pki.dir, "server.crt")
        key_path = os.path.join(self.pki.dir, "server.key")
        os.replace(fresh.key, key_path)
        os.replace(fresh.cert, cert_path)
        fresh.cert, fresh.key = cert_path, key_path
        return fresh

    def _common(self, cluster):
        return {
            "workers": 2,
            "cluster": cluster,
            "limits": {"drain_timeout": f"{int(DRAIN_TIMEOUT_S)}s"},
            "log": {"level": "info", "format": "json", "access_log": True},
        }

    def echo_config(self, without=()):
        cfg = {"listeners": [
            {"name": "client", "address": f"{HOST}:0"},
            {"name": "tls", "address": f"{HOST}:0",
             "tls": {"cert_file": self.cert.cert, "key_file": self.cert.key}},
        ]}
        cfg.update(self._common({
            "name": "echo", "kind": "grpc",
            "members": [{"name": n, "address": s.address} for n, s in self.echo.items() if n not in without],
            "balance": "least_request", "connect_timeout": "1s", "health_check": dict(HEALTH)}))
        return cfg

    def etcd_config(self, without=()):
        cfg = {"listeners": [{"name": "client", "address": f"{HOST}:0"}]}
        cfg.update(self._common({
            "name": "etcd", "kind": "etcd",
            "members": [{"name": m.name, "address": m.endpoint} for m in self.etcd.members
                        if m.name not in without],
            "balance": "least_request", "connect_timeout": "1s", "health_check": dict(HEALTH)}))
        return cfg

    def sidemuxes(self):
        return [sm for sm in (self.sm_echo, self.sm_etcd) if sm is not None]

    # members ----------------------------------------------------------------
    def etcd_member(self, name):
        return next(m for m in self.etcd.members if m.name == name)

    def restart_echo(self, name, timeout=20.0):
        """Start echo server `name` again on its old port (sidemux's config names it)."""
        old = self.echo[name]
        stop_process(old.proc, timeout=2)
        self.echo[name] = grpc_testsvc.EchoServer(name, self.gen_dir, port=old.port).start(timeout=timeout)

    def restart_etcd(self, name, timeout=20.0):
        """Start etcd member `name` again from its data dir and wait for its /health."""
        m = self.etcd_member(name)
        stop_process(m.proc, timeout=2)
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.etcd.members)
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(self.etcd.member_argv(m, initial), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_etcd_healthy(name, timeout)

    def wait_etcd_healthy(self, name, timeout=20.0):
        m = self.etcd_member(name)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 10):
            h = member_health(m.client_port)
            if h is not None and h.get("health") == "true":
                return
            if m.proc.poll() is not None:
                raise RuntimeError(f"etcd {name} exited with {m.proc.returncode}: {m.log_tail()}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"etcd {name} not healthy within {timeout}s: {m.log_tail()}")

    def etcd_leader(self):
        """Name of the member etcd's /metrics calls leader (etcd_server_is_leader 1), or None."""
        import urllib.request
        for m in self.etcd.members:
            try:
                with urllib.request.urlopen(f"{m.client_url}/metrics", timeout=2) as resp:
                    if b"\netcd_server_is_leader 1" in resp.read():
                        return m.name
            except OSError:
                continue
        return None

    # stop -------------------------------------------------------------------
    def all_pids(self):
        pids = [sm.pid for sm in self.sidemuxes() if sm.proc is not None]
        pids += [s.proc.pid for s in self.echo.values() if s.proc is not None]
        if self.etcd is not None:
            pids += [m.proc.pid for m in self.etcd.members if m.proc is not None]
        return pids

    def stop(self):
        for pid in self.all_pids():
            _continue(pid)  # a stopped process cannot act on SIGTERM
        for sm in self.sidemuxes():
            sm.stop()
        for s in self.echo.values():
            s.stop(timeout=5)
        if self.etcd is not None:
            self.etcd.stop()

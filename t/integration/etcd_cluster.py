"""A 3-member etcd cluster on loopback for the integration tests (Debian etcd-server 3.4).

Every member listens on 127.0.0.1 with client and peer ports picked at run time,
keeps its data in a temporary directory and joins a cluster with a unique
--initial-cluster-token. The cluster is ready when every member's GET /health
says "health":"true". Members are stopped by PID (SIGTERM, wait, SIGKILL) at
teardown, also when start-up or a test failed.

    with start_cluster(tmp_path_factory) as cluster:
        cluster.client_ports          # [C1, C2, C3]
        etcdctl(cluster.endpoint(0), "put", "k", "v")   # -> EtcdctlResult(stdout, stderr, rc)
"""

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from procs import free_ports, stop_process

HOST = "127.0.0.1"
ETCD_BIN = os.environ.get("ETCD_BIN", "etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "etcdctl")
READY_TIMEOUT = 20.0  # seconds for every member's /health to say true
START_ATTEMPTS = 3  # a port picked at run time may be taken before etcd binds it: retry with new ports


class MemberExited(RuntimeError):
    pass


class EtcdctlResult:
    def __init__(self, args, stdout, stderr, rc):
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.rc = rc

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return (f"<etcdctl {' '.join(self.args)} rc={self.rc} stdout={self.stdout[-800:]!r} "
                f"stderr={self.stderr[-800:]!r}>")


def etcdctl_command(endpoint, *args):
    """argv for etcdctl against one endpoint ("127.0.0.1:PORT")."""
    return [ETCDCTL_BIN, f"--endpoints={endpoint}", *args]


def etcdctl_env():
    env = dict(os.environ)
    env["ETCDCTL_API"] = "3"
    return env


def etcdctl(endpoint, *args, input=None, timeout=15.0):
    """Run etcdctl (v3 API) against endpoint with a timeout. Returns EtcdctlResult.

    On timeout the child is killed (by subprocess.run, by PID) and rc is None.
    """
    argv = etcdctl_command(endpoint, *args)
    try:
        cp = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout, env=etcdctl_env())
    except subprocess.TimeoutExpired as e:
        def text(v):
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "")
        return EtcdctlResult(argv, text(e.stdout), text(e.stderr) + f"\n[timed out after {timeout}s]", None)
    return EtcdctlResult(argv, cp.stdout, cp.stderr, cp.returncode)


def etcdctl_popen(endpoint, *args, **kw):
    """Start a long-running etcdctl (watch, lease keep-alive, ...); the caller stops it with stop_process."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(etcdctl_command(endpoint, *args), env=etcdctl_env(), **kw)


def member_health(client_port, timeout=1.0):
    """The parsed JSON of GET /health on a member's client port, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{client_port}/health", timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None


class EtcdMember:
    def __init__(self, name, data_dir, client_port, peer_port):
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.log_path = f"{data_dir}.log"
        self.proc = None

    @property
    def client_url(self):
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://{HOST}:{self.peer_port}"

    @property
    def endpoint(self):
        return f"{HOST}:{self.client_port}"

    def log_tail(self, limit=3000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")


class EtcdCluster:
    """A 3-member (by default) etcd cluster on 127.0.0.1.

    Subclasses change how members are started and checked through client_scheme,
    token_prefix, member_argv() and member_health() (test_tls.py: https client URLs).
    """

    kind = "etcd cluster"  # for error messages
    client_scheme = "http"  # of the client URLs etcd listens on and advertises
    token_prefix = "sidemux-test"  # --initial-cluster-token is this plus a random suffix

    def __init__(self, base_dir, size=3, heartbeat_ms=50, election_ms=500):
        self.base_dir = str(base_dir)
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.token = ""
        self.members = []

    # accessors ------------------------------------------------------------
    @property
    def client_ports(self):
        return [m.client_port for m in self.members]

    @property
    def names(self):
        return [m.name for m in self.members]

    def endpoint(self, i):
        return self.members[i].endpoint

    def etcdctl(self, *args, member=0, **kw):
        """etcdctl straight to one member (not through a proxy)."""
        return etcdctl(self.endpoint(member), *args, **kw)

    def logs(self):
        return "\n".join(f"--- {m.name} ({m.log_path}) ---\n{m.log_tail()}" for m in self.members)

    # lifecycle -------------------------------------------------------------
    def start(self, timeout=READY_TIMEOUT):
        if shutil.which(ETCD_BIN) is None:
            raise RuntimeError(f"{ETCD_BIN!r} not found on PATH (Debian package etcd-server)")
        last_error = None
        for attempt in range(START_ATTEMPTS):
            try:
                self._start_once(attempt, timeout)
                return self
            except MemberExited as e:
                # typically a port picked at run time was taken before etcd bound it: new ports
                last_error = e
                self.stop()
            except BaseException:
                self.stop()
                raise
        raise last_error

    def _start_once(self, attempt, timeout):
        ports = free_ports(2 * self.size)
        self.token = f"{self.token_prefix}-{uuid.uuid4().hex}"
        self.members = []
        for i in range(self.size):
            data_dir = os.path.join(self.base_dir, f"try{attempt}-m{i + 1}")
            os.makedirs(data_dir, exist_ok=True)
            self.members.append(EtcdMember(f"m{i + 1}", data_dir, ports[2 * i], ports[2 * i + 1]))
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            with open(m.log_path, "wb") as log:
                m.proc = subprocess.Popen(self.member_argv(m, initial), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_healthy(timeout)

    def member_argv(self, m, initial):
        """etcd's command line for member m; initial is the --initial-cluster value."""
        client_url = f"{self.client_scheme}://{HOST}:{m.client_port}"
        return [
            ETCD_BIN,
            "--name", m.name,
            "--data-dir", m.data_dir,
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
        ]

    def member_health(self, m):
        """The parsed JSON of member m's GET /health, or None (the module-level member_health)."""
        return member_health(m.client_port)

    def wait_healthy(self, timeout=READY_TIMEOUT):
        """Block until every member's /health says "health":"true" (bounded by time and count)."""
        deadline = time.monotonic() + timeout
        last = {}
        for _ in range(int(timeout / 0.05) + 10):
            for m in self.members:
                if m.proc.poll() is not None:
                    raise MemberExited(f"etcd member {m.name} exited with {m.proc.returncode} before it was "
                                       f"healthy; logs:\n{self.logs()}")
                last[m.name] = self.member_health(m)
            if all(h is not None and h.get("health") == "true" for h in last.values()):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} not healthy within {timeout}s: {last}; logs:\n{self.logs()}")

    def stop(self):
        """Stop every member by PID (SIGTERM, wait, SIGKILL). Safe to call more than once.

        One member at a time: SIGTERM to all at once makes the leader wait seconds for a
        leadership transfer to followers that are going away too.
        """
        for m in self.members:
            if m.proc is not None:
                stop_process(m.proc)


@contextlib.contextmanager
def start_cluster(tmp_path_factory, size=3):
    """Context manager: a running, healthy cluster; every member stopped on exit, also on failure."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

"""TLS: termination on listeners (ALPN, mTLS, TLS and plaintext on one port,
resumption, certificate reload, broken handshakes) and TLS towards members
(a 3-member etcd cluster that requires client certificates).

Certificates are made with the openssl CLI at test time (tls_certs.py). Every
sidemux here has a plaintext listener `client` (used for /metrics, since a
TLS-only port cannot be read in plaintext) and TLS listeners named `tls`,
`mixed` or `mtls`. All on 127.0.0.1; every process is stopped by PID.
"""

import json
import os
import queue
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings

import grpc
import pytest

import grpc_testsvc
from conftest import (HOST, H2Client, ResponseReader, build_request, client_hello, connect, read_until_close,
                      run, send_bytes, stop_process, wait_members_up)
from etcd_cluster import ETCD_BIN, EtcdCluster, etcdctl
from test_grpc_forwarding import gen, start_servers  # noqa: F401  (gen is a fixture)
from tls_certs import Pki, read

WORKERS = 2
HEALTH = {"interval": "200ms", "timeout": "1s"}


# --------------------------------------------------------------------------
# Certificates


class Certs:
    """Everything a test may need, issued once per module."""

    def __init__(self, directory):
        self.pki = Pki(os.path.join(directory, "ca"))
        self.ca = self.pki.ca_cert
        self.server = self.pki.issue("server-a", "sidemux server A", sans=["DNS:localhost", "IP:127.0.0.1"])
        self.server_b = self.pki.issue("server-b", "sidemux server B", sans=["DNS:localhost", "IP:127.0.0.1"])
        self.client = self.pki.issue("client", "sidemux test client", usage="clientAuth")
        # etcd uses its server certificate as a client of its own gRPC gateway, hence clientAuth too
        self.etcd = self.pki.issue("etcd", "etcd member", sans=["DNS:localhost", "IP:127.0.0.1"],
                                   usage="serverAuth,clientAuth")
        self.rogue_pki = Pki(os.path.join(directory, "rogue"), cn="rogue CA")
        self.rogue_client = self.rogue_pki.issue("rogue-client", "rogue client", usage="clientAuth")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def echo(gen):  # noqa: F811
    """One plaintext sidemuxtest.Echo member, s1."""
    servers = start_servers(gen[2], names=("s1",))
    yield servers[0]
    for s in servers:
        s.stop()


# --------------------------------------------------------------------------
# Config and metrics


def listener_tls(cert, **extra):
    return {"cert_file": cert.cert, "key_file": cert.key, **extra}


def make_config(members, tls_listeners, classify="3s", cluster_tls=None, workers=WORKERS):
    """Listener `client` (plaintext) plus one listener per (name, tls dict)."""
    cfg = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}] +
                     [{"name": name, "address": f"{HOST}:0", "tls": tls} for name, tls in tls_listeners],
        "workers": workers,
        "cluster": {
            "members": [{"name": n, "address": a} for n, a in members],
            "connect_timeout": "2s",
            "health_check": dict(HEALTH),
        },
        "limits": {"classify_timeout": classify},
        "log": {"level": "debug", "access_log": True},
    }
    if cluster_tls is not None:
        cfg["cluster"]["tls"] = cluster_tls
    return cfg


def metric(sm, name, **labels):
    return sm.metrics().sum(name, **labels)


def rejected(sm, reason, listener="tls"):
    return metric(sm, "sidemux_connections_rejected_total", listener=listener, reason=reason)


def wait_for(fetch, pred, timeout=5.0, what="condition"):
    """Poll fetch() until pred(value) (bounded by time and count). Returns the value or fails."""
    deadline = time.monotonic() + timeout
    value = None
    for _ in range(1000):
        value = fetch()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    pytest.fail(f"{what}: not reached within {timeout}s; last value {value!r}")


def handshake_lines(sm, listener="tls"):
    return [e for e in sm.log_lines() if e.get("msg") == "tls handshake done" and e.get("listener") == listener]


def log_tail(sm, n=30):
    return "\n".join(sm.raw_lines()[-n:])


# --------------------------------------------------------------------------
# TLS clients


def client_context(certs, cert=None, min_version=None, max_version=None, alpn=("http/1.1",), tickets=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.ca)
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def tls_connect(port, ctx, session=None, timeout=5.0):
    """A verified TLS connection to 127.0.0.1:port (name checked: localhost)."""
    raw = connect(port, timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise


class TlsResponseReader(ResponseReader):
    """ResponseReader for an SSLSocket: decrypted bytes may wait in OpenSSL where select() cannot see them."""

    def _fill(self, deadline):
        if self.sock.pending() == 0:
            return super()._fill(deadline)
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True


def tls_get(sock, path, headers=None):
    """GET on an open (keep-alive) TLS connection."""
    sock.sendall(build_request(path, headers=headers))
    return TlsResponseReader(sock, 5.0).read_response()


def plain_get(sock, path):
    sock.sendall(build_request(path))
    return ResponseReader(sock, 5.0).read_response()


def expect_refused(port, ctx, what):
    """A TLS client that must not get an HTTP answer: the handshake fails or the
    connection closes before any response. Returns how it ended."""
    try:
        s = tls_connect(port, ctx)
    except (ssl.SSLError, OSError) as e:
        return f"handshake failed: {e!r}"
    try:
        s.settimeout(5.0)
        data = b""
        try:
            s.sendall(build_request("/livez"))
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, OSError) as e:
            assert not data, f"{what}: got an answer before the error {e!r}: {data[:200]!r}"
            return f"closed after the handshake: {e!r}"
        except socket.timeout:
            pytest.fail(f"{what}: connection neither answered nor closed within 5 s")
        assert not data, f"{what}: got an answer: {data[:200]!r}"
        return "closed after the handshake (eof)"
    finally:
        s.close()


def peer_cert(port, certs):
    """(serial hex, CN, DER) of the certificate a new handshake presents."""
    with tls_connect(port, client_context(certs)) as s:
        info = s.getpeercert()
        der = s.getpeercert(binary_form=True)
    cn = dict(x[0] for x in info["subject"])["commonName"]
    return info["serialNumber"], cn, der


def pem_to_der(path):
    return ssl.PEM_cert_to_DER_cert(read(path).decode())


def curl(certs, port, path, *extra, cert=None):
    argv = ["curl", "-sS", "--max-time", "5", "--noproxy", "*", "--cacert", certs.ca,
            "--resolve", f"localhost:{port}:{HOST}", "-w", "\n%{http_version} %{http_code}", *extra]
    if cert is not None:
        argv += ["--cert", cert.cert, "--key", cert.key]
    return run(argv + [f"https://localhost:{port}{path}"], timeout=15)


def curl_result(cp):
    """(body, http_version, code) of a curl run made by curl()."""
    body, _, tail = cp.stdout.rpartition("\n")
    version, _, code = tail.partition(" ")
    return body, version, code


def grpc_channel(port, certs, cert=None, secure=True):
    opts = list(grpc_testsvc.GRPC_MESSAGE_OPTIONS) + [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_http_proxy", 0),
    ]
    if not secure:
        return grpc.insecure_channel(f"{HOST}:{port}", options=opts)
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(certs.ca),
        private_key=read(cert.key) if cert else None,
        certificate_chain=read(cert.cert) if cert else None)
    # The target is the IP: the server certificate's IP SAN is verified.
    return grpc.secure_channel(f"{HOST}:{port}", creds, options=opts)


def legacy_client_hello(version):
    """A ClientHello that offers only `version` (0x0301 = TLS 1.0): no supported_versions extension."""
    suites = b"".join(x.to_bytes(2, "big") for x in (0xC014, 0xC013, 0x0035, 0x002F, 0x000A))
    body = (version.to_bytes(2, "big") + os.urandom(32) + b"\x00" + len(suites).to_bytes(2, "big") + suites +
            b"\x01\x00")
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def tls_alerts(data):
    """[(level, description)] of the TLS alert records at the start of data (plaintext alerts)."""
    out = []
    pos = 0
    while pos + 5 <= len(data):
        ctype, length = data[pos], int.from_bytes(data[pos + 3:pos + 5], "big")
        if ctype != 0x15 or length != 2 or pos + 7 > len(data):
            break
        out.append((data[pos + 5], data[pos + 6]))
        pos += 7
    return out


# --------------------------------------------------------------------------
# 1. grpcio and curl over TLS


def test_grpc_and_curl_over_tls_with_alpn(gen, echo, certs, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    sm = sidemux_factory(make_config([("s1", echo.address)], [("tls", listener_tls(certs.server))]))
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("tls")

    ch = grpc_channel(port, certs)
    try:
        stub = pb2_grpc.EchoStub(ch)
        for i in range(5):
            payload = os.urandom(1000 + i)
            reply = stub.Unary(pb2.Msg(seq=i, payload=payload), timeout=10)
            assert (reply.seq, reply.payload, reply.server) == (i, payload, "s1")
        # large messages both ways cross many TLS records
        big = random.randbytes(3 << 20)
        reply = stub.Unary(pb2.Msg(seq=99, payload=big), timeout=20)
        assert reply.payload == big
        got = list(stub.ServerStream(pb2.StreamRequest(count=300, size=9000), timeout=20))
        assert [m.seq for m in got] == list(range(300))
        assert all(m.payload == bytes([m.seq % 256]) * 9000 for m in got)
    finally:
        ch.close()

    done = sm.wait_log(lambda e: e.get("msg") == "tls handshake done" and e.get("listener") == "tls"
                       and e.get("alpn") == "h2", timeout=5)
    assert done is not None, f"no 'tls handshake done' with alpn h2; log:\n{log_tail(sm)}"
    assert metric(sm, "sidemux_connections_accepted_total", listener="tls", protocol="h2", tls="true") >= 1

    # curl over HTTP/1.1 and over h2, both by ALPN
    cp = curl(certs, port, "/health", "--http1.1")
    body, version, code = curl_result(cp)
    assert cp.returncode == 0 and (version, code) == ("1.1", "200"), (cp.returncode, cp.stdout, cp.stderr)
    assert '"health":"true"' in body.replace(" ", ""), body
    cp = curl(certs, port, "/health", "--http2")
    body, version, code = curl_result(cp)
    assert cp.returncode == 0 and (version, code) == ("2", "200"), (cp.returncode, cp.stdout, cp.stderr)
    assert '"health":"true"' in body.replace(" ", ""), body
    assert sm.wait_log(lambda e: e.get("msg") == "tls handshake done" and e.get("alpn") == "http/1.1",
                       timeout=5) is not None, log_tail(sm)
    m = sm.metrics()
    assert m.sum("sidemux_connections_accepted_total", listener="tls", protocol="http1", tls="true") >= 1
    assert m.sum("sidemux_connections_accepted_total", listener="tls", protocol="h2", tls="true") >= 2
    assert m.sum("sidemux_connections_accepted_total", listener="tls", tls="false") == 0
    assert m.sum("sidemux_connections_rejected_total", listener="tls") == 0

    # a TLS client without ALPN gets HTTP/1.1 (classified from the decrypted bytes)
    with tls_connect(port, client_context(certs, alpn=())) as s:
        assert s.selected_alpn_protocol() is None
        resp = tls_get(s, "/livez")
        assert resp.status == 200 and resp.body == b"ok", resp
        # keep-alive: a second request on the same TLS connection
        resp = tls_get(s, "/version")
        assert resp.status == 200 and "openssl" in resp.json(), resp


class DribbleTlsClient:
    """A TLS client over memory BIOs that sends its ciphertext one byte per send() and
    its plaintext one byte per TLS record, to check that nothing waits for whole messages."""

    def __init__(self, port, certs, alpn=()):
        self.ctx = client_context(certs, alpn=alpn)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.sock = connect(port)

    def close(self):
        self.sock.close()

    def _flush(self):
        for b in self.outgoing.read():
            self.sock.sendall(bytes([b]))

    def _recv(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        assert data, "server closed the connection"
        self.incoming.write(data)

    def handshake(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._recv(deadline)
        self._flush()

    def send(self, plain):
        for b in plain:  # one record per byte
            self.obj.write(bytes([b]))
        self._flush()

    def read(self, predicate, timeout=5.0):
        """Plaintext until predicate(buffer) holds."""
        deadline = time.monotonic() + timeout
        buf = b""
        while not predicate(buf):
            try:
                buf += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._flush()
                self._recv(deadline)
        return buf


def test_tls_bytes_one_at_a_time(certs, sidemux_factory):
    """The ClientHello one byte per segment; then HTTP/1 and the HTTP/2 preface one byte per TLS record,
    classified from the decrypted bytes without ALPN."""
    sm = sidemux_factory(make_config([("m1", f"{HOST}:1")], [("tls", listener_tls(certs.server))]))
    port = sm.port_of("tls")
    c = DribbleTlsClient(port, certs)
    try:
        c.handshake()
        c.send(build_request("/livez"))
        data = c.read(lambda b: b.endswith(b"ok"))
        assert data.startswith(b"HTTP/1.1 200"), data
    finally:
        c.close()
    c = DribbleTlsClient(port, certs)
    try:
        c.handshake()
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        data = c.read(lambda b: len(b) >= 9)
        assert data[3] == 0x4 and data[4] & 1 == 0, f"expected the server's SETTINGS first: {data[:30].hex()}"
    finally:
        c.close()
    m = sm.metrics()
    assert m.sum("sidemux_connections_accepted_total", listener="tls", protocol="http1", tls="true") == 1
    assert m.sum("sidemux_connections_accepted_total", listener="tls", protocol="h2", tls="true") == 1
    assert m.sum("sidemux_connections_rejected_total", listener="tls") == 0


# --------------------------------------------------------------------------
# 2. Client certificates


def test_client_certificate_required(gen, echo, certs, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    sm = sidemux_factory(make_config([("s1", echo.address)],
                                     [("tls", listener_tls(certs.server, client_ca_file=certs.ca))]))
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("tls")

    # with a client certificate from the CA: works (python, curl, grpcio)
    with tls_connect(port, client_context(certs, cert=certs.client)) as s:
        resp = tls_get(s, "/livez")
        assert resp.status == 200, resp
    cp = curl(certs, port, "/health", "--http1.1", cert=certs.client)
    assert cp.returncode == 0 and curl_result(cp)[1:] == ("1.1", "200"), (cp.stdout, cp.stderr)
    ch = grpc_channel(port, certs, cert=certs.client)
    try:
        assert pb2_grpc.EchoStub(ch).Unary(pb2.Msg(seq=1), timeout=10).server == "s1"
    finally:
        ch.close()
    assert rejected(sm, "tls_handshake") == 0, log_tail(sm)

    # without one, or with one from another CA: refused, TLS 1.3 and TLS 1.2
    outcomes = {}
    for label, cert in (("no cert", None), ("rogue cert", certs.rogue_client)):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_context(certs, cert=cert, min_version=version, max_version=version)
            outcomes[f"{label} {version.name}"] = expect_refused(port, ctx, f"{label} {version.name}")
    cp = curl(certs, port, "/health", "--http1.1")
    assert cp.returncode != 0 and not cp.stdout.startswith("{"), (cp.returncode, cp.stdout, cp.stderr)
    cp = curl(certs, port, "/health", "--http1.1", cert=certs.rogue_client)
    assert cp.returncode != 0 and not cp.stdout.startswith("{"), (cp.returncode, cp.stdout, cp.stderr)

    ch = grpc_channel(port, certs)
    try:
        with pytest.raises(grpc.RpcError) as err:
            pb2_grpc.EchoStub(ch).Unary(pb2.Msg(seq=2), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    finally:
        ch.close()

    # 4 python + 2 curl + at least one grpcio attempt, each counted
    wait_for(lambda: rejected(sm, "tls_handshake"), lambda v: v >= 7, what=f"tls_handshake rejections {outcomes}")
    failed = wait_for(lambda: [e for e in sm.log_lines() if e.get("msg") == "tls handshake failed"],
                      lambda lines: len(lines) >= 7, what="7 'tls handshake failed' log lines")
    assert all(e.get("listener") == "tls" and e.get("error") for e in failed), failed
    # still serving clients with certificates
    with tls_connect(port, client_context(certs, cert=certs.client)) as s:
        assert tls_get(s, "/livez").status == 200
    m = sm.metrics()
    assert m.sum("sidemux_connections_accepted_total", listener="tls", tls="true") >= 4
    assert m.sum("sidemux_connections_rejected_total", listener="tls", reason="classify_timeout") == 0


# --------------------------------------------------------------------------
# 3. require_tls


def test_tls_and_plaintext_on_one_port(gen, echo, certs, sidemux_factory):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    sm = sidemux_factory(make_config([("s1", echo.address)],
                                     [("mixed", listener_tls(certs.server, require_tls=False))]))
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("mixed")

    plain = connect(port)
    secure = tls_connect(port, client_context(certs))
    try:
        for i in range(5):
            for label, sock, get in (("plaintext", plain, plain_get), ("tls", secure, tls_get)):
                resp = get(sock, "/livez" if i % 2 else "/health")
                assert resp.status == 200, (label, i, resp)
        assert secure.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        plain.close()
        secure.close()

    # gRPC in plaintext (prior knowledge) and over TLS on the same port, at once
    ch_plain = grpc_channel(port, certs, secure=False)
    ch_tls = grpc_channel(port, certs)
    try:
        stubs = [pb2_grpc.EchoStub(ch_plain), pb2_grpc.EchoStub(ch_tls)]
        for i in range(6):
            assert stubs[i % 2].Unary(pb2.Msg(seq=i), timeout=10).seq == i
    finally:
        ch_plain.close()
        ch_tls.close()
    with H2Client(port) as h2c:
        r = h2c.get("/livez")
        assert r.status == 200 and bytes(r.data) == b"ok", r.headers

    m = sm.metrics()
    acc = lambda proto, tls: m.sum("sidemux_connections_accepted_total", listener="mixed",  # noqa: E731
                                   protocol=proto, tls=tls)
    assert acc("http1", "false") >= 1 and acc("http1", "true") >= 1, m.series("sidemux_connections_accepted_total")
    assert acc("h2", "false") >= 2 and acc("h2", "true") >= 1, m.series("sidemux_connections_accepted_total")
    assert m.sum("sidemux_connections_rejected_total", listener="mixed") == 0


def test_plaintext_on_a_tls_port_is_refused(certs, sidemux_factory):
    sm = sidemux_factory(make_config([("m1", f"{HOST}:1")], [("tls", listener_tls(certs.server))]))
    port = sm.port_of("tls")
    for label, data in (("http1", build_request("/health")), ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")):
        t0 = time.monotonic()
        with connect(port) as s:
            send_bytes(s, data)
            got, closed = read_until_close(s, timeout=5)
        assert closed is not None and got == b"", (label, got[:200], closed)
        assert time.monotonic() - t0 < 2.0, label  # at once, not by classify_timeout
    wait_for(lambda: rejected(sm, "tls_handshake"), lambda v: v == 2, what="plaintext rejections")
    assert rejected(sm, "classify_timeout") == 0
    assert metric(sm, "sidemux_connections_accepted_total", listener="tls") == 0
    with tls_connect(port, client_context(certs)) as s:
        assert tls_get(s, "/livez").status == 200


# --------------------------------------------------------------------------
# 4. TLS towards an etcd cluster that requires client certificates


class TlsEtcdCluster(EtcdCluster):
    """EtcdCluster with https client URLs, --client-cert-auth and plaintext peer URLs."""

    kind = "TLS etcd cluster"
    client_scheme = "https"
    token_prefix = "sidemux-tls-test"

    def __init__(self, base_dir, certs):
        super().__init__(base_dir, size=3)
        self.certs = certs

    def member_argv(self, m, initial):
        return super().member_argv(m, initial) + [
            "--cert-file", self.certs.etcd.cert, "--key-file", self.certs.etcd.key,
            "--trusted-ca-file", self.certs.ca, "--client-cert-auth",
        ]

    def member_health(self, m):
        ctx = client_context(self.certs, cert=self.certs.client, alpn=())
        try:
            with urllib.request.urlopen(f"https://{HOST}:{m.client_port}/health", timeout=1.0,
                                        context=ctx) as resp:
                return json.loads(resp.read().decode())
        except (OSError, ValueError, urllib.error.URLError):
            return None


@pytest.fixture(scope="module")
def etcd_tls(tmp_path_factory, certs):
    if shutil.which(ETCD_BIN) is None:
        pytest.fail(f"{ETCD_BIN!r} not found (Debian package etcd-server)")
    cluster = TlsEtcdCluster(tmp_path_factory.mktemp("etcd-tls"), certs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def etcd_members(cluster):
    return [(m.name, m.endpoint) for m in cluster.members]


def ctl_tls(port, certs, *args, timeout=15.0):
    return etcdctl(f"https://{HOST}:{port}", "--cacert", certs.ca, *args, timeout=timeout)


class LineQueue:
    def __init__(self, proc):
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._run, args=(proc,), daemon=True).start()

    def _run(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            self.q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.q.put(None)

    def until(self, wanted, deadline):
        """Read lines until `wanted` shows up; False at EOF or the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                line = self.q.get(timeout=remaining)
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if line == wanted:
                return True


def watch_sees(watcher, reader, put, key, deadline):
    """Put key=ready-N until the watch shows one (a watch registers asynchronously)."""
    for i in range(50):
        assert watcher.poll() is None, f"watch exited {watcher.returncode}"
        res = put(key, f"ready-{i}")
        assert res.rc == 0, res
        if reader.until(f"ready-{i}", min(deadline, time.monotonic() + 0.5)):
            return True
        if time.monotonic() > deadline:
            return False
    return False


def test_etcd_cluster_over_tls(etcd_tls, certs, sidemux_factory):
    up_names = [m.name for m in etcd_tls.members]
    sm = sidemux_factory(make_config(
        etcd_members(etcd_tls), [("mixed", listener_tls(certs.server, require_tls=False))],
        cluster_tls={"ca_file": certs.ca, "cert_file": certs.client.cert, "key_file": certs.client.key}))
    wait_members_up(sm, up_names, timeout=15)  # health checks over TLS with the client certificate
    port = sm.port_of("mixed")
    resp = sm.get("/health")
    assert resp.status == 200 and resp.json() == {"health": "true", "reason": ""}, resp
    cp = curl(certs, port, "/health", "--http1.1")
    assert cp.returncode == 0 and curl_result(cp)[1:] == ("1.1", "200"), (cp.stdout, cp.stderr)

    plain = lambda *a: etcdctl(f"{HOST}:{port}", *a)  # noqa: E731
    secure = lambda *a: ctl_tls(port, certs, *a)  # noqa: E731
    for label, put, get in (("plain->tls", plain, secure), ("tls->plain", secure, plain)):
        res = put("put", f"tls-{label}", f"value {label}")
        assert res.rc == 0 and res.stdout == "OK\n", (label, res, log_tail(sm))
        res = get("get", f"tls-{label}")
        assert res.rc == 0 and res.stdout == f"tls-{label}\nvalue {label}\n", (label, res, log_tail(sm))
    # the write reached etcd (read straight from a member over TLS with a client certificate)
    direct = etcdctl(f"https://{etcd_tls.members[2].endpoint}", "--cacert", certs.ca, "--cert", certs.client.cert,
                     "--key", certs.client.key, "get", "tls-plain->tls", "--print-value-only")
    assert direct.rc == 0 and direct.stdout == "value plain->tls\n", direct

    # watch over TLS, puts in plaintext; and the other way round
    for label, watch_args, put in (
            ("watch tls", [f"--endpoints=https://{HOST}:{port}", "--cacert", certs.ca], plain),
            ("watch plain", [f"--endpoints={HOST}:{port}"], secure)):
        key = f"tls-watch-{label.split()[1]}"
        proc = subprocess.Popen(["etcdctl", *watch_args, "watch", key], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, ETCDCTL_API="3"))
        try:
            reader = LineQueue(proc)
            assert watch_sees(proc, reader, lambda k, v: put("put", k, v), key, time.monotonic() + 10), \
                (label, reader.seen, log_tail(sm))
            for i in range(5):
                assert put("put", key, f"event-{i}").rc == 0
                assert reader.until(f"event-{i}", time.monotonic() + 5), (label, i, reader.seen)
        finally:
            stop_process(proc, timeout=5)

    m = sm.metrics()
    assert m.sum("sidemux_connections_accepted_total", listener="mixed", tls="true") >= 1
    assert m.sum("sidemux_connections_accepted_total", listener="mixed", tls="false") >= 1
    ok = m.sum("sidemux_upstream_streams_total", grpc_status="OK")
    assert ok >= 6, m.series("sidemux_upstream_streams_total")


@pytest.mark.parametrize("case", ["server_name localhost", "server_name wrong", "other CA", "no client cert"])
def test_cluster_tls_verifies_members(etcd_tls, certs, sidemux_factory, case):
    tls = {"ca_file": certs.ca, "cert_file": certs.client.cert, "key_file": certs.client.key}
    if case == "server_name localhost":
        tls["server_name"] = "localhost"  # the etcd certificate has DNS:localhost
    elif case == "server_name wrong":
        tls["server_name"] = "etcd.invalid"
    elif case == "other CA":
        tls["ca_file"] = certs.rogue_pki.ca_cert
    else:
        del tls["cert_file"], tls["key_file"]
    sm = sidemux_factory(make_config(etcd_members(etcd_tls), [], cluster_tls=tls))
    names = [m.name for m in etcd_tls.members]
    if case == "server_name localhost":
        wait_members_up(sm, names, timeout=15)
        res = etcdctl(f"{HOST}:{sm.port}", "put", "tls-sni", "ok")
        assert res.rc == 0, (res, log_tail(sm))
        return
    # every member fails: /health 503 and every member down, kept over several check intervals
    wait_for(lambda: sm.get("/health").status, lambda s: s == 503, timeout=5, what=f"{case}: /health 503")
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        up = sm.metrics().series("sidemux_member_up")
        assert all(v == 0 for v in up.values()), (case, up, log_tail(sm))
        time.sleep(0.1)
    resp = sm.get("/health")
    assert resp.status == 503 and resp.json()["health"] == "false", resp
    why = {"server_name wrong": "certificate verify failed (hostname mismatch)",
           "other CA": "certificate verify failed (unable to get local issuer certificate)"}.get(case)
    if why:  # the reason names the TLS failure
        assert why in resp.json()["reason"], resp.json()
    res = etcdctl(f"{HOST}:{sm.port}", "--command-timeout=1s", "get", "tls-sni", timeout=10)
    assert res.rc != 0 and "Unavailable" in res.stderr, res


# --------------------------------------------------------------------------
# 5. Certificate rotation by SIGHUP


def test_sighup_rotates_certificate(gen, echo, certs, sidemux_factory, tmp_path):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    live_cert, live_key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")

    def install(cert_src, key_src):
        shutil.copyfile(cert_src, live_cert)
        shutil.copyfile(key_src, live_key)

    install(certs.server.cert, certs.server.key)
    sm = sidemux_factory(make_config([("s1", echo.address)],
                                     [("tls", {"cert_file": live_cert, "key_file": live_key})]))
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("tls")
    a, b = certs.server, certs.server_b
    assert peer_cert(port, certs) == (a.serial_hex, a.subject, pem_to_der(a.cert))

    old_http = tls_connect(port, client_context(certs))
    old_ch = grpc_channel(port, certs)
    old_stub = pb2_grpc.EchoStub(old_ch)
    try:
        assert tls_get(old_http, "/livez").status == 200
        assert old_stub.Unary(pb2.Msg(seq=1), timeout=10).server == "s1"
        gen0 = sm.metrics().value("sidemux_config_generation")

        def reload(expect):
            before = sm.metrics().sum("sidemux_config_reloads_total", result=expect)
            os.kill(sm.pid, signal.SIGHUP)
            wait_for(lambda: sm.metrics().sum("sidemux_config_reloads_total", result=expect),
                     lambda v: v == before + 1, what=f"reload {expect}")

        install(b.cert, b.key)
        reload("success")
        wait_for(lambda: sm.metrics().value("sidemux_config_generation"), lambda g: g == gen0 + 1,
                 what="config generation")
        assert peer_cert(port, certs) == (b.serial_hex, b.subject, pem_to_der(b.cert))
        # an openssl s_client sees the new certificate too
        cp = run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "localhost",
                  "-CAfile", certs.ca, "-verify_return_error"], timeout=15)
        assert "CN = sidemux server B" in cp.stdout and "Verify return code: 0 (ok)" in cp.stdout, cp.stdout[-2000:]

        # connections opened before keep working on the old certificate, without reconnecting
        h2_accepted = lambda: metric(sm, "sidemux_connections_accepted_total", listener="tls",  # noqa: E731
                                     protocol="h2", tls="true")
        assert h2_accepted() == 1  # the old channel is the only HTTP/2 client of the TLS listener
        resp = tls_get(old_http, "/livez")
        assert resp.status == 200, resp
        assert old_http.getpeercert()["serialNumber"] == a.serial_hex
        assert old_stub.Unary(pb2.Msg(seq=2), timeout=10).seq == 2
        assert h2_accepted() == 1, "the old gRPC channel had to reconnect"

        # a certificate file that does not load fails the reload; the served certificate stays
        with open(live_cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        n_failed = len([e for e in sm.log_lines() if "reload failed" in str(e.get("msg"))])
        reload("failure")
        line = sm.wait_log(lambda e: "reload failed" in str(e.get("msg")) and live_cert in str(e.get("error")),
                           timeout=5)
        assert line is not None and line.get("level") == "error", log_tail(sm)
        assert sm.metrics().value("sidemux_config_generation") == gen0 + 1
        assert peer_cert(port, certs)[0] == b.serial_hex

        # a key that does not match the certificate fails it too
        shutil.copyfile(a.cert, live_cert)  # key B stays
        reload("failure")
        wait_for(lambda: len([e for e in sm.log_lines() if "reload failed" in str(e.get("msg"))]),
                 lambda n: n == n_failed + 2, what="a second 'reload failed' log line")
        assert sm.wait_log(lambda e: "reload failed" in str(e.get("msg")) and live_key in str(e.get("error")),
                           timeout=5) is not None, log_tail(sm)  # names the key that does not match
        assert peer_cert(port, certs)[0] == b.serial_hex
        assert tls_get(old_http, "/livez").status == 200
        assert old_stub.Unary(pb2.Msg(seq=3), timeout=10).seq == 3
        assert h2_accepted() == 1, "the old gRPC channel had to reconnect"

        # fixed files load at the next SIGHUP
        install(a.cert, a.key)
        reload("success")
        wait_for(lambda: sm.metrics().value("sidemux_config_generation"), lambda g: g == gen0 + 2,
                 what="config generation")
        assert peer_cert(port, certs)[0] == a.serial_hex
    finally:
        old_http.close()
        old_ch.close()


# --------------------------------------------------------------------------
# 6. Broken and stalled handshakes, old protocol versions

CLASSIFY_MS = 500


@pytest.fixture
def sm_short(certs, sidemux_factory):
    """A TLS listener with classify_timeout 500ms and no usable member."""
    return sidemux_factory(make_config([("m1", f"{HOST}:1")], [("tls", listener_tls(certs.server))],
                                       classify=f"{CLASSIFY_MS}ms"))


def reject_counts(sm):
    m = sm.metrics()
    return {r: m.value("sidemux_connections_rejected_total", listener="tls", reason=r)
            for r in ("tls_handshake", "classify_timeout")}


def expect_reject_counts(sm, tls_handshake, classify_timeout, what):
    want = {"tls_handshake": tls_handshake, "classify_timeout": classify_timeout}
    wait_for(lambda: reject_counts(sm), lambda c: c == want, what=what)


def still_serves(sm, certs):
    port = sm.port_of("tls")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        with tls_connect(port, client_context(certs, min_version=version, max_version=version)) as s:
            assert s.version() == version.name.replace("_", "."), s.version()
            assert tls_get(s, "/livez").status == 200
    assert sm.proc.poll() is None


def send_and_wait_close(port, data, timeout=5.0):
    """(bytes received, how it closed, seconds from connect to close)."""
    t0 = time.monotonic()
    with connect(port) as s:
        send_bytes(s, data)
        got, closed = read_until_close(s, timeout=timeout)
    return got, closed, time.monotonic() - t0


def test_garbage_after_tls_record_header(certs, sm_short):
    sm = sm_short
    port = sm.port_of("tls")
    rnd = random.Random(20240601)
    payload = bytes([0x8F]) + rnd.randbytes(15)  # 0x8f is no handshake message type
    got, closed, elapsed = send_and_wait_close(port, b"\x16\x03\x01\x00\x10" + payload)
    assert closed is not None, "a garbage handshake was left open"
    assert elapsed < 0.4, f"closed after {elapsed:.3f}s: by the timeout, not by the failed handshake"
    expect_reject_counts(sm, 1, 0, "garbage handshake")
    failed = sm.wait_log(lambda e: e.get("msg") == "tls handshake failed", timeout=5)
    assert failed is not None and failed.get("error"), log_tail(sm)
    still_serves(sm, certs)
    # RFC 8446 6.2 / 5246 7.2: a handshake aborted by the server sends a fatal alert first
    alerts = tls_alerts(got)
    assert alerts and alerts[0][0] == 2, \
        f"no fatal TLS alert before the close (got {got[:40].hex()!r}, {closed})"


@pytest.mark.parametrize("version", [0x0301, 0x0302], ids=["tls1.0", "tls1.1"])
def test_old_protocol_version_refused(certs, sm_short, version):
    sm = sm_short
    port = sm.port_of("tls")
    got, closed, elapsed = send_and_wait_close(port, legacy_client_hello(version))
    assert closed is not None and elapsed < 0.4, (closed, elapsed)
    expect_reject_counts(sm, 1, 0, f"client hello {version:#06x}")
    failed = sm.wait_log(lambda e: e.get("msg") == "tls handshake failed", timeout=5)
    assert failed is not None and "protocol" in failed.get("error", ""), log_tail(sm)
    if version == 0x0301:
        # python's own TLS 1.0 client (SECLEVEL 0 so that the local policy lets it offer TLS 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1
            ctx = client_context(certs, min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError):
            tls_connect(port, ctx).close()
        expect_reject_counts(sm, 2, 0, "python TLS 1.0 client")
    still_serves(sm, certs)
    # RFC 8446 appendix D / RFC 5246 appendix E.1: the server answers a version it does not
    # support with a protocol_version alert (openssl s_server: 15 03 01 00 02 02 46)
    assert (2, 70) in tls_alerts(got), \
        f"{version:#06x}: expected a fatal protocol_version alert, got {got[:40].hex()!r} then {closed}"


def test_stalled_handshake_closed_by_classify_timeout(certs, sm_short):
    sm = sm_short
    port = sm.port_of("tls")
    hello = client_hello()
    assert len(hello) > 100, hello[:16]
    got, closed, elapsed = send_and_wait_close(port, hello[:len(hello) // 2])
    assert closed is not None and got == b"", (got[:40], closed)
    assert 0.4 <= elapsed <= 2.0, f"stalled handshake closed after {elapsed:.3f}s (classify_timeout 500ms)"
    expect_reject_counts(sm, 0, 1, "stalled handshake")

    # a completed handshake that never sends a request: also bounded by classify_timeout
    t0 = time.monotonic()
    s = tls_connect(port, client_context(certs))
    try:
        s.settimeout(5)
        try:
            got = s.recv(100)
        except (ssl.SSLError, OSError):
            got = b""
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    assert got == b"" and 0.3 <= elapsed <= 2.0, (got, elapsed)
    expect_reject_counts(sm, 0, 2, "silent TLS client")
    assert metric(sm, "sidemux_connections_accepted_total", listener="tls") == 0
    still_serves(sm, certs)


# --------------------------------------------------------------------------
# 7. Session resumption

RESUMPTION_CASES = {
    "tls1.3 ticket": ("tls", ssl.TLSVersion.TLSv1_3, True, False),
    "tls1.2 ticket": ("tls", ssl.TLSVersion.TLSv1_2, True, False),
    "tls1.2 session id": ("tls", ssl.TLSVersion.TLSv1_2, False, False),  # the server-side cache
    "mtls tls1.3 ticket": ("mtls", ssl.TLSVersion.TLSv1_3, True, True),
    "mtls tls1.2 session id": ("mtls", ssl.TLSVersion.TLSv1_2, False, True),
}


@pytest.mark.parametrize("case", list(RESUMPTION_CASES))
def test_session_resumption(certs, sidemux_factory, case):
    listener, version, tickets, with_cert = RESUMPTION_CASES[case]
    sm = sidemux_factory(make_config([("m1", f"{HOST}:1")],
                                     [("tls", listener_tls(certs.server)),
                                      ("mtls", listener_tls(certs.server, client_ca_file=certs.ca))]))
    ctx = client_context(certs, cert=certs.client if with_cert else None, min_version=version,
                         max_version=version, tickets=tickets)
    port = sm.port_of(listener)
    with tls_connect(port, ctx) as s:
        assert not s.session_reused and s.version() == version.name.replace("_", ".")
        assert tls_get(s, "/livez").status == 200  # a TLS 1.3 ticket arrives after the handshake
        session = s.session
    assert session is not None
    if not tickets:
        assert session.id, "no session id to resume with"
    reused = []
    for _ in range(4):  # 2 workers: resumption works whichever worker accepts
        with tls_connect(port, ctx, session=session) as s:
            reused.append(s.session_reused)
            assert tls_get(s, "/livez").status == 200
    assert all(reused), f"{case}: session_reused of 4 handshakes offering the session: {reused}"
    # debug log: one "tls handshake done" line per resumed handshake (stderr lines arrive asynchronously)
    wait_for(lambda: len([e for e in handshake_lines(sm, listener) if e.get("resumed") is True]),
             lambda n: n == 4, what="4 'tls handshake done' lines with resumed true")

"""reload.watch: a change to the config file, or to a certificate or key it
names, reloads as SIGHUP does, without any signal (SPEC "reload.watch"):
Kubernetes' ConfigMap `..data` symlink swap, a certificate renamed into
place, an invalid file rejected with the running config kept, and a burst of
changes debounced into one reload."""

import os
import shutil
import time

from conftest import H2Client, to_yaml, wait_members_up
from test_grpc_forwarding import channel, cluster_config, gen, start_servers  # noqa: F401
from test_tls import (certs, client_context, echo, make_config, peer_cert, pem_to_der, tls_connect,  # noqa: F401
                      tls_get, wait_for)

# SPEC: a change is applied at most once a second; the done-when bound for a
# ConfigMap swap is 2 s from the swap to the new generation.
SWAP_BOUND_S = 2.0


class ConfigMapDir:
    """A directory laid out as the kubelet mounts a ConfigMap or Secret:
    NAME -> ..data/NAME, ..data -> ..<timestamp>/; an update writes a new
    timestamped directory and swaps ..data with one rename."""

    def __init__(self, root, files):
        self.root = str(root)
        os.makedirs(self.root)
        self.current = None
        self.serial = 0
        self.update(files)
        for name in files:
            os.symlink(os.path.join("..data", name), os.path.join(self.root, name))

    def path(self, name):
        return os.path.join(self.root, name)

    def update(self, files):
        self.serial += 1
        stamp = f"..2026_12_01_00_00_{self.serial:02d}.{os.getpid()}"
        os.makedirs(os.path.join(self.root, stamp))
        for name, text in files.items():
            with open(os.path.join(self.root, stamp, name), "w") as f:
                f.write(text)
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(stamp, tmp)
        os.replace(tmp, os.path.join(self.root, "..data"))
        if self.current:
            shutil.rmtree(os.path.join(self.root, self.current))
        self.current = stamp


def reloads(sm, result):
    return sm.metrics().sum("sidemux_config_reloads_total", result=result)


def generation(sm):
    return sm.metrics().value("sidemux_config_generation")


def advertised_streams(port):
    """SETTINGS_MAX_CONCURRENT_STREAMS a new HTTP/2 client is offered (limits.max_concurrent_streams)."""
    with H2Client(port) as c:
        c.wait_settings()
        return c.conn.remote_settings.max_concurrent_streams


def served_by(stub, pb2, n):
    return {stub.Unary(pb2.Msg(seq=i), timeout=5).server for i in range(n)}


def test_configmap_swap_reloads_without_a_signal(gen, sidemux_factory, tmp_path):  # noqa: F811
    pb2, pb2_grpc, gen_dir = gen
    servers = {s.name: s for s in start_servers(gen_dir, ["s1", "s2"])}
    try:
        def config(names, **extra):
            cfg = cluster_config([(n, servers[n].address) for n in names],
                                 health_check={"interval": "200ms", "timeout": "150ms"})
            cfg["reload"] = {"watch": True}
            cfg.update(extra)
            return cfg

        first = config(["s1"])
        cm = ConfigMapDir(tmp_path / "cm", {"sidemux.yaml": to_yaml(first)})
        sm = sidemux_factory(first, args=["-c", cm.path("sidemux.yaml")])
        wait_members_up(sm, ["s1"], 10.0)
        ch = channel(sm.port)
        try:
            stub = pb2_grpc.EchoStub(ch)
            assert served_by(stub, pb2, 10) == {"s1"}
            assert generation(sm) == 1 and reloads(sm, "success") == 0

            # The swap: a new member, without SIGHUP.
            t0 = time.monotonic()
            cm.update({"sidemux.yaml": to_yaml(config(["s1", "s2"]))})
            wait_for(lambda: generation(sm), lambda g: g == 2, timeout=10, what="generation 2 after the swap")
            took = time.monotonic() - t0
            assert took < SWAP_BOUND_S, f"the swap took {took:.2f}s to reload"
            assert reloads(sm, "success") == 1 and reloads(sm, "failure") == 0
            wait_members_up(sm, ["s1", "s2"], 10.0)
            assert served_by(stub, pb2, 30) == {"s1", "s2"}

            # An invalid file is rejected as on SIGHUP: the running config stays.
            cm.update({"sidemux.yaml": "listeners: [\n"})
            wait_for(lambda: reloads(sm, "failure"), lambda n: n == 1, timeout=10, what="a failed reload")
            assert generation(sm) == 2 and reloads(sm, "success") == 1
            assert served_by(stub, pb2, 30) == {"s1", "s2"}

            # A burst of swaps within the debounce window is one reload, of the last one.
            for limit in (100, 101, 102):
                cm.update({"sidemux.yaml": to_yaml(config(["s2"], limits={"max_concurrent_streams": limit}))})
            wait_for(lambda: generation(sm), lambda g: g == 3, timeout=10, what="generation 3 after the burst")
            assert served_by(stub, pb2, 20) == {"s2"}
            assert advertised_streams(sm.port) == 102
            time.sleep(1.5)  # a second reload of the same burst would land within a debounce period
            assert generation(sm) == 3 and reloads(sm, "success") == 2
        finally:
            ch.close()
        assert sm.stop() == 0
    finally:
        for s in servers.values():
            s.stop()


def test_rotated_certificate_is_used_by_new_handshakes(gen, echo, certs, sidemux_factory, tmp_path):  # noqa: F811
    pb2, pb2_grpc, _ = gen
    live = tmp_path / "tls"
    live.mkdir()
    live_cert, live_key = str(live / "server.crt"), str(live / "server.key")

    def install(cert):
        # As an installer does: write beside, rename into place.
        for src, dst in ((cert.cert, live_cert), (cert.key, live_key)):
            shutil.copyfile(src, dst + ".new")
            os.replace(dst + ".new", dst)

    a, b = certs.server, certs.server_b
    install(a)
    cfg = make_config([("s1", echo.address)], [("tls", {"cert_file": live_cert, "key_file": live_key})])
    cfg["reload"] = {"watch": True}
    sm = sidemux_factory(cfg)
    wait_members_up(sm, ["s1"], 10.0)
    port = sm.port_of("tls")
    assert peer_cert(port, certs) == (a.serial_hex, a.subject, pem_to_der(a.cert))
    old = tls_connect(port, client_context(certs))
    try:
        assert tls_get(old, "/livez").status == 200
        install(b)
        wait_for(lambda: generation(sm), lambda g: g == 2, timeout=10, what="generation 2 after the rotation")
        assert reloads(sm, "success") == 1 and reloads(sm, "failure") == 0
        assert peer_cert(port, certs) == (b.serial_hex, b.subject, pem_to_der(b.cert))
        # The connection made before keeps its certificate and keeps working.
        assert tls_get(old, "/livez").status == 200
        assert old.getpeercert()["serialNumber"] == a.serial_hex

        # A certificate that does not load fails the reload; the served one stays.
        with open(live_cert + ".new", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        os.replace(live_cert + ".new", live_cert)
        wait_for(lambda: reloads(sm, "failure"), lambda n: n == 1, timeout=10, what="a failed reload")
        assert generation(sm) == 2
        assert peer_cert(port, certs)[0] == b.serial_hex
        assert sm.wait_log(lambda e: "reload failed" in str(e.get("msg")) and live_cert in str(e.get("error")),
                           timeout=5) is not None
    finally:
        old.close()

"""The fault rotation: one fault every FAULT_EVERY_S seconds, in ROTATION order.

Each fault records itself in the ledger with the window and status codes it may
explain (see ledger.py), carries itself out, and puts things back (the member
restarted or continued, the member added back, ...) before the next one.
"""

import os
import signal
import ssl
import socket
import time

import floods
from topology import DRAIN_TIMEOUT_S, ECHO_NAMES

FAULT_EVERY_S = 30.0
STOP_S = 4.0  # SIGSTOP .. SIGCONT
DEAD_S = 5.0  # kill -9 .. restart
IDLE_CONNECTIONS = 1000
IDLE_HOLD_S = 5.0
ROTATION = ("kill_echo", "stop_etcd", "reload", "cert_rotation", "floods", "kill_etcd", "stop_echo",
            "idle_connections")

# SPEC: a stream that reached a member and then failed (closed connection,
# timeout, ...) ends with UNAVAILABLE for the client.
CUT = ("UNAVAILABLE",)
FROZE = CUT + ("DEADLINE_EXCEEDED",)
ETCD_ERRORS = ("UNAVAILABLE", "DEADLINE_EXCEEDED")  # etcd's leader changed / no leader / timed out


class Faults:
    def __init__(self, topo, ledger, stop):
        self.topo = topo
        self.ledger = ledger
        self.stop_event = stop
        self.count = {}  # fault name -> times run so far

    def run(self, index):
        name = ROTATION[index % len(ROTATION)]
        n = self.count.get(name, 0)
        self.count[name] = n + 1
        getattr(self, name)(n)

    def _guard(self, fault, fn):
        try:
            outcome = fn()
        except Exception as e:  # the fault could not be carried out: a harness problem, reported
            fault.error = repr(e)
            outcome = "ERROR"
        fault.finish(outcome or "")
        return fault

    # kill -9 and restart --------------------------------------------------------
    def kill_echo(self, n):
        name = ECHO_NAMES[n % len(ECHO_NAMES)]
        f = self.ledger.fault("kill -9", cluster="echo", member=name, codes=CUT)
        # Only streams open on the member when it died may fail; later ones are
        # refused at connect and retried (SPEC: never reached a member).
        f.only_started_before = f.start + 1.0

        def go():
            os.kill(self.topo.echo[name].pid, signal.SIGKILL)
            self.stop_event.wait(DEAD_S)
            self.topo.restart_echo(name)
            self.topo.sm_echo.wait_members_up([name])
            return f"{name} dead {DEAD_S:.0f}s, restarted"
        return self._guard(f, go)

    def _pick_etcd(self, n):
        """The leader on even turns, a follower on odd ones: (name, role)."""
        leader = self.topo.etcd_leader()
        name = leader if n % 2 == 0 and leader else next(m for m in self.topo.etcd.names if m != leader)
        return name, "leader" if name == leader else "follower"

    def _freeze(self, pid):
        os.kill(pid, signal.SIGSTOP)
        try:
            self.stop_event.wait(STOP_S)
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill_etcd(self, n):
        name, role = self._pick_etcd(n)
        # A dead leader means an election: etcd itself fails requests on every member meanwhile.
        f = self.ledger.fault("kill -9", cluster="etcd", codes=ETCD_ERRORS + CUT, note=f"{name} ({role})")

        def go():
            os.kill(self.topo.etcd_member(name).proc.pid, signal.SIGKILL)
            self.stop_event.wait(DEAD_S)
            self.topo.restart_etcd(name)
            self.topo.sm_etcd.wait_members_up([name])
            return f"{name} ({role}) dead {DEAD_S:.0f}s, restarted"
        return self._guard(f, go)

    # SIGSTOP / SIGCONT ---------------------------------------------------------
    def stop_echo(self, n):
        name = ECHO_NAMES[(n + 1) % len(ECHO_NAMES)]
        f = self.ledger.fault("SIGSTOP", cluster="echo", member=name, codes=FROZE)

        def go():
            self._freeze(self.topo.echo[name].pid)
            f.only_started_before = time.monotonic()
            self.topo.sm_echo.wait_members_up([name])
            return f"{name} stopped {STOP_S:.0f}s"
        return self._guard(f, go)

    def stop_etcd(self, n):
        name, role = self._pick_etcd(n)
        f = self.ledger.fault("SIGSTOP", cluster="etcd", codes=ETCD_ERRORS + CUT, note=f"{name} ({role})")

        def go():
            self._freeze(self.topo.etcd_member(name).proc.pid)
            self.topo.wait_etcd_healthy(name)
            self.topo.sm_etcd.wait_members_up([name])
            return f"{name} ({role}) stopped {STOP_S:.0f}s"
        return self._guard(f, go)

    # reload that removes a member and adds it back ----------------------------------
    def reload(self, n):
        on_etcd = n % 2 == 0
        sm = self.topo.sm_etcd if on_etcd else self.topo.sm_echo
        # The member with the most open streams, so the drain has long streams (Watches) to end.
        names = self.topo.etcd.names if on_etcd else list(ECHO_NAMES)
        m = sm.metrics()
        name = max(names, key=lambda x: (m.value("sidemux_member_active_streams", member=x) or 0, x))
        make = self.topo.etcd_config if on_etcd else self.topo.echo_config
        # SPEC: the removed member's open streams finish, up to drain_timeout. Only a
        # stream that was open at the removal and outlived drain_timeout may be cut.
        f = self.ledger.fault("reload", cluster="etcd" if on_etcd else "echo", member=name,
                              codes=CUT, note=f"{sm.name} -{name}")

        def go():
            took = sm.reload(make(without=(name,)))
            removed_at = time.monotonic()
            f.only_started_before = removed_at
            f.explain_from = removed_at + DRAIN_TIMEOUT_S - 0.5
            f.explain_to = removed_at + DRAIN_TIMEOUT_S + 5.0
            self.stop_event.wait(DRAIN_TIMEOUT_S + 2.0)
            took2 = sm.reload(make())
            sm.wait_members_up([name])
            return f"{sm.name}: -{name} ({took:.2f}s), +{name} ({took2:.2f}s)"
        return self._guard(f, go)

    # certificate rotation --------------------------------------------------------
    def cert_rotation(self, n):
        f = self.ledger.fault("cert rotation", cluster="echo")

        def go():
            sm = self.topo.sm_echo
            old = self.topo.cert.serial_hex
            self.topo.cert = self.topo.issue_cert()
            new = self.topo.cert.serial_hex
            took = sm.reload(self.topo.echo_config())
            seen = served_serial(sm.port("tls"), self.topo.pki.ca_cert)
            if seen != new:
                self.ledger.finding(f"certificate rotation: after the reload a new handshake got serial "
                                    f"{seen}, expected {new} (old {old})")
            return f"serial {old} -> {new} ({took:.2f}s), served {seen}"
        return self._guard(f, go)

    # floods ---------------------------------------------------------------------
    def floods(self, n):
        f = self.ledger.fault("floods")

        def go():
            out = []
            for sm in self.topo.sidemuxes():
                for flood in (floods.rapid_reset, floods.continuation_flood):
                    r = flood(sm.port())
                    out.append(f"{sm.name} {r}")
                    if r.cut is None:
                        self.ledger.finding(f"{sm.name}: {r.name} flood of {r.sent_frames} frames was never cut")
                if not floods.h2_ok(sm.port()):
                    self.ledger.finding(f"{sm.name}: no HTTP/2 answer right after the floods")
            return "; ".join(out)
        return self._guard(f, go)

    # idle connections --------------------------------------------------------------
    def idle_connections(self, n):
        f = self.ledger.fault("idle connections")
        sm = self.topo.sm_echo

        def active():
            return sm.metrics().sum("sidemux_connections_active")

        def go():
            before = active()
            opened, during = floods.idle_connections(sm.port(), IDLE_CONNECTIONS, IDLE_HOLD_S, active)
            after = None
            for _ in range(100):  # closed ones leave within a few seconds (bounded: 100 x 0.1 s)
                after = active()
                if after <= before:
                    break
                time.sleep(0.1)
            if after > before:
                self.ledger.finding(f"{sm.name}: {after:.0f} connections active 10s after closing {opened} idle "
                                    f"ones (before: {before:.0f})")
            return f"{opened} opened; active {before:.0f} -> {during:.0f} -> {after:.0f}"
        return self._guard(f, go)


def served_serial(port, ca_file):
    """The serial (upper-case hex) of the certificate a fresh TLS handshake on port presents."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert()["serialNumber"]

"""What happened during the soak: the faults injected (with the window in which
each one may make calls fail) and every call made, and the rule that explains a
failed call by a fault in flight.

A failure is explained by fault F when all of these hold:
- the call went to F's cluster (a fault on an echo member explains no etcd call);
- its status code is one the SPEC gives for F (a stream cut under the client:
  UNAVAILABLE; a frozen member: also DEADLINE_EXCEEDED); a failure inside F's
  window with another code is a finding of its own ("wrong status");
- the call failed inside F's window (from the fault to GRACE_S after its end:
  streams on a dead member end when sidemux notices);
- the member that served the call, when known (echo replies name their
  server), is F's member.
Faults whose SPEC contract is "drops nothing" (reloads inside drain_timeout,
certificate rotation, floods on other connections, idle connections) have no
window for ordinary calls: any failure during them is a finding.
"""

import collections
import threading
import time

GRACE_S = 5.0  # after a fault ends: health checks notice, in-flight calls finish


class Fault:
    def __init__(self, kind, cluster=None, member=None, codes=(), note=""):
        self.kind = kind
        self.cluster = cluster
        self.member = member
        self.codes = set(codes)
        self.note = note
        self.start = time.monotonic()
        self.end = None
        # Window in which failures with self.codes are explained (set by end() unless overridden).
        self.explain_from = self.start
        self.explain_to = None
        self.only_started_before = None  # explain only calls that started before this time
        self.error = None  # the fault itself could not be carried out (a harness problem)
        self.outcome = ""

    def finish(self, outcome=""):
        self.end = time.monotonic()
        if self.explain_to is None:
            self.explain_to = self.end + GRACE_S
        self.outcome = outcome

    def covers(self, call):
        """call failed inside this fault's window, whatever its status code."""
        if not self.codes or call.cluster != self.cluster:
            return False
        if self.member is not None and call.member is not None and call.member != self.member:
            return False
        if self.only_started_before is not None and call.start >= self.only_started_before:
            return False
        # The moment of failure counts, not the call's whole span: a Watch open for
        # minutes lives through many faults, and only the one at its end broke it.
        to = self.explain_to if self.explain_to is not None else float("inf")
        return self.explain_from <= call.end <= to


class Call:
    __slots__ = ("kind", "cluster", "start", "end", "code", "detail", "member")

    def __init__(self, kind, cluster, start, end, code, detail, member):
        self.kind = kind
        self.cluster = cluster
        self.start = start
        self.end = end
        self.code = code
        self.detail = detail
        self.member = member


class Ledger:
    def __init__(self):
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self.made = collections.Counter()  # kind -> calls made
        self.failures = []  # Call, failed ones only
        self.faults = []
        self.notes = []  # findings that are not calls (a flood not cut, a cert not rotated, ...)

    def ok(self, kind):
        with self._lock:
            self.made[kind] += 1

    def failed(self, kind, cluster, start, code, detail, member=None):
        call = Call(kind, cluster, start, time.monotonic(), code, str(detail)[:300], member)
        with self._lock:
            self.made[kind] += 1
            self.failures.append(call)
        return call

    def fault(self, kind, **kw):
        f = Fault(kind, **kw)
        with self._lock:
            self.faults.append(f)
        return f

    def finding(self, text):
        with self._lock:
            self.notes.append((time.monotonic(), text))

    def explain(self, call):
        """(fault, True) for the first fault that explains call; (fault, False) when a fault
        covers it but the status code is not one the SPEC allows for that fault; (None, False)."""
        covering = [f for f in self.faults if f.covers(call)]
        for f in covering:
            if call.code in f.codes:
                return f, True
        return (covering[0], False) if covering else (None, False)

    def rel(self, t):
        return t - self.t0

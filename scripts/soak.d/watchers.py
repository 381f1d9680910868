"""Long etcd Watches through sidemux that resume as etcd clients do.

Each watcher watches every key under load.PREFIX from a start revision. When
its stream breaks (member killed, reload drain ended, ...) it records the break
in the ledger and opens a new Watch with start_revision = last revision seen + 1,
so no event may be missing or repeated: received events must be exactly etcd's
history of the prefix from the start revision, in revision order.

A watcher that has not seen a revision acknowledged more than STALL_S ago is
stalled: the watchdog cuts its stream (recorded as STALL) and it resumes.

GrpcWatcher uses the gRPC Watch stream. GatewayWatcher uses etcd's HTTP/1
grpc-gateway (POST /v3/watch, newline-delimited JSON), which sidemux forwards
(cluster.http1_forward): when the gRPC watch behind it breaks, etcd's gateway
ends the response with an error object, read here as the gRPC status it
carries.
"""

import base64
import http.client
import json
import queue
import socket
import threading
import time

import grpc

from load import PREFIX, code_of, details_of
from stubs import insecure_channel

STALL_S = 15.0
PREFIX_END = PREFIX[:-1] + bytes([PREFIX[-1] + 1])


class Watcher(threading.Thread):
    kind = "watch"

    def __init__(self, name, ledger, stop, port, start_rev):
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.stop_event = stop
        self.port = port
        self.start_rev = start_rev
        self.events = []  # (revision, key) in arrival order
        self.last_rev = start_rev - 1
        self.out_of_order = 0
        self.streams = 0
        self.stalled = False
        self.crashed = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.streams += 1
                self.stalled = False
                t0 = time.monotonic()
                try:
                    self.stream_once(self.last_rev + 1)
                    if not self.stop_event.is_set():
                        self.ledger.failed(self.kind, "etcd", t0, "STALL" if self.stalled else "ENDED",
                                           "watch stream ended without error")
                except Exception as e:  # noqa: BLE001 (a break of any kind is recorded, then resumed)
                    if self.stop_event.is_set() and not self.stalled:
                        self.ledger.ok(self.kind)  # cut at the end of the run
                        break
                    code = "STALL" if self.stalled else code_of(e)
                    self.ledger.failed(self.kind, "etcd", t0, code, details_of(e))
                    self.stop_event.wait(0.1)  # a resume loop against a dead port stays bounded
                else:
                    if self.stop_event.is_set():
                        self.ledger.ok(self.kind)
        except Exception as e:  # noqa: BLE001
            self.crashed = repr(e)

    def on_event(self, rev, key):
        if rev <= self.last_rev:
            self.out_of_order += 1
        else:
            self.last_rev = rev
        self.events.append((rev, key))

    def cut(self, stalled):
        """Called from another thread: end the current stream (stall or end of run)."""
        self.stalled = stalled
        self.interrupt()


class GrpcWatcher(Watcher):
    def __init__(self, name, ledger, stop, port, start_rev, stubs):
        super().__init__(name, ledger, stop, port, start_rev)
        self.stubs = stubs
        self.channel = insecure_channel(port)
        self.stub = stubs.etcd_grpc.WatchStub(self.channel)
        self.call = None

    def stream_once(self, start_revision):
        pb2 = self.stubs.etcd_pb2
        done = queue.Queue()

        def requests():
            yield pb2.WatchRequest(create_request=pb2.WatchCreateRequest(
                key=PREFIX, range_end=PREFIX_END, start_revision=start_revision))
            done.get()  # keep the request side open until this stream is over

        # No deadline: a watch lives for the run; the watchdog bounds its silences.
        self.call = self.stub.Watch(requests())
        try:
            if self.stop_event.is_set():
                self.call.cancel()
            for resp in self.call:
                if resp.canceled:
                    raise RuntimeError(f"watch canceled by etcd: {resp.cancel_reason!r} "
                                       f"(compact_revision {resp.compact_revision})")
                for ev in resp.events:
                    self.on_event(ev.kv.mod_revision, ev.kv.key)
        finally:
            done.put(None)

    def interrupt(self):
        call = self.call
        if call is not None:
            call.cancel()

    def close(self):
        self.channel.close()


class GatewayError(Exception):
    """The error object etcd's gateway ends a stream with: {"error": {"grpc_code", "message", ...}}."""

    def __init__(self, error):
        super().__init__(error.get("message", ""))
        self.error = error

    def code(self):
        return grpc.StatusCode.__members__.get(GRPC_CODE_NAMES.get(self.error.get("grpc_code"), ""))

    def details(self):
        return self.error.get("message", "")


GRPC_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def answer_error(status, body):
    """A gateway answer other than 200: its JSON {"error", "code"} (etcd's
    gateway and sidemux's own 503 when no member can take the stream) names the
    gRPC status; anything else is a finding of its own."""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and isinstance(obj.get("code"), int):
            return GatewayError({"grpc_code": obj["code"], "message": f"{status}: {obj.get('error', '')}"})
    except ValueError:
        pass
    return RuntimeError(f"/v3/watch answered {status}: {body[:300]!r}")


class GatewayWatcher(Watcher):
    kind = "gateway_watch"

    def __init__(self, name, ledger, stop, port, start_rev):
        super().__init__(name, ledger, stop, port, start_rev)
        self.conn = None

    def stream_once(self, start_revision):
        body = json.dumps({"create_request": {
            "key": base64.b64encode(PREFIX).decode(), "range_end": base64.b64encode(PREFIX_END).decode(),
            "start_revision": str(start_revision)}})
        # The timeout is a last bound only: the watchdog cuts silent streams much earlier.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=4 * STALL_S)
        self.conn = conn
        try:
            if self.stop_event.is_set():
                return
            conn.request("POST", "/v3/watch", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise answer_error(resp.status, resp.read(4096))
            pending = b""
            while True:
                # read1, not readline: http.client's readline reads a connection
                # closed mid-body as a clean end; read1 raises IncompleteRead.
                try:
                    data = resp.read1(65536)
                except (http.client.IncompleteRead, ConnectionError) as e:
                    # How sidemux ends a forwarded request whose member went
                    # (SPEC): HTTP/1's UNAVAILABLE.
                    raise GatewayError({"grpc_code": grpc.StatusCode.UNAVAILABLE.value[0],
                                        "message": f"connection closed mid-stream ({type(e).__name__})"}) from e
                if not data:
                    return  # the last chunk: the gateway ended the stream
                pending += data
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    if line.strip():
                        self.on_object(json.loads(line))
        finally:
            conn.close()

    def on_object(self, obj):
        if "error" in obj:
            raise GatewayError(obj["error"])
        result = obj.get("result", {})
        if result.get("canceled"):
            raise RuntimeError(f"gateway watch canceled: {result}")
        for ev in result.get("events", []):
            kv = ev.get("kv", {})
            self.on_event(int(kv.get("mod_revision", 0)), base64.b64decode(kv.get("key", "")))

    def interrupt(self):
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        pass


class Watchdog(threading.Thread):
    """Cuts the stream of a watcher that missed a revision acknowledged STALL_S ago."""

    def __init__(self, watchers, puts, stop):
        super().__init__(name="watchdog", daemon=True)
        self.watchers = watchers
        self.puts = puts
        self.stop_event = stop

    def run(self):
        while not self.stop_event.wait(1.0):
            due = self.puts.acked_before(time.monotonic() - STALL_S)
            for w in self.watchers:
                if due and w.last_rev < due and not w.stalled:
                    w.cut(stalled=True)


class History:
    """etcd's own record of the prefix, read from a member directly (not through sidemux).

    Every put uses a fresh key and nothing is deleted or compacted, so the keys'
    create and mod revisions are the prefix's event history: events, [(revision, key)]
    sorted. A key with version > 1 was written more than once, by one Put executed
    twice: rewritten, [(key, create_revision, mod_revision, version)]. (Past version 2
    the writes in between are unknown here; none has been seen.)"""

    def __init__(self, stubs, endpoint, timeout=30.0):
        ch = grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", 256 << 20)])
        try:
            r = stubs.etcd_grpc.KVStub(ch).Range(
                stubs.etcd_pb2.RangeRequest(key=PREFIX, range_end=PREFIX_END), timeout=timeout)
        finally:
            ch.close()
        self.revision = r.header.revision
        self.events = sorted({(rev, kv.key) for kv in r.kvs for rev in (kv.create_revision, kv.mod_revision)})
        self.rewritten = [(kv.key, kv.create_revision, kv.mod_revision, kv.version) for kv in r.kvs
                          if kv.version > 1]

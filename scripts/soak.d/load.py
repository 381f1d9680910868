"""Client load for the soak, one thread per worker: echo calls (unary, server
streams, bidi streams, 1 MiB messages, unary over TLS) through the kind-grpc
sidemux and etcd Put + linearizable Range through the kind-etcd sidemux.

Every call has a deadline; every loop ends at the stop event. Each call's
result goes to the ledger: ok, or failed with its status code (CORRUPT for an
answer that came back wrong, STALE for a read that missed an acknowledged put).
"""

import threading
import time
import uuid

import grpc

from stubs import insecure_channel, tls_channel

MIB = 1 << 20
CALL_TIMEOUT_S = 10.0
ETCD_TIMEOUT_S = 5.0
PREFIX = b"soak/w/"


def code_of(err):
    code = err.code() if hasattr(err, "code") else None
    return code.name if code is not None else type(err).__name__


def details_of(err):
    return err.details() if hasattr(err, "details") else str(err)


class Worker(threading.Thread):
    kind = "worker"
    cluster = "echo"
    pause_s = 0.0  # between calls: keeps the load steady on a shared 2-core machine

    def __init__(self, ledger, stop):
        super().__init__(name=self.kind, daemon=True)
        self.ledger = ledger
        self.stop_event = stop
        self.seq = 0
        self.crashed = None

    def run(self):
        try:
            self.setup()
            while not self.stop_event.is_set():
                self.seq += 1
                self.one()
                if self.pause_s:
                    self.stop_event.wait(self.pause_s)
        except Exception as e:  # a bug in the harness: reported, never hidden
            self.crashed = repr(e)
        finally:
            self.teardown()

    def setup(self):
        pass

    def teardown(self):
        ch = getattr(self, "channel", None)
        if ch is not None:
            ch.close()

    def call(self, kind, fn, member_box=None):
        """Run fn(); record ok or the failure. fn returns None or raises."""
        t0 = time.monotonic()
        try:
            problem = fn()
        except grpc.RpcError as e:
            self.ledger.failed(kind, self.cluster, t0, code_of(e), details_of(e),
                               member_box[0] if member_box else None)
            return
        if problem:
            self.ledger.failed(kind, self.cluster, t0, problem[0], problem[1],
                               member_box[0] if member_box else None)
        else:
            self.ledger.ok(kind)


class EchoWorker(Worker):
    def __init__(self, ledger, stop, stubs, port):
        super().__init__(ledger, stop)
        self.stubs = stubs
        self.port = port

    def setup(self):
        self.channel = insecure_channel(self.port)
        self.stub = self.stubs.echo_grpc.EchoStub(self.channel)


class UnaryWorker(EchoWorker):
    """Small unary calls; every 25th carries 1 MiB each way."""
    kind = "unary"
    pause_s = 0.005

    def one(self):
        big = self.seq % 25 == 0
        payload = (b"%08d" % self.seq) * ((MIB if big else 256) // 8)
        pb2 = self.stubs.echo_pb2

        def fn():
            r = self.stub.Unary(pb2.Msg(seq=self.seq, payload=payload), timeout=CALL_TIMEOUT_S)
            if r.seq != self.seq or r.payload != payload:
                return ("CORRUPT", f"reply seq {r.seq} payload {len(r.payload)} bytes from {r.server}")
            return None
        self.call("unary_1mib" if big else "unary", fn)


class ServerStreamWorker(EchoWorker):
    """Server streams: 50 x 4 KiB, and every 4th stream 4 x 1 MiB."""
    kind = "server_stream"
    pause_s = 0.05

    def one(self):
        big = self.seq % 4 == 0
        count, size = (4, MIB) if big else (50, 4096)
        member = [None]
        pb2 = self.stubs.echo_pb2

        def fn():
            n = 0
            for msg in self.stub.ServerStream(pb2.StreamRequest(count=count, size=size), timeout=CALL_TIMEOUT_S):
                member[0] = msg.server
                if msg.seq != n or len(msg.payload) != size or msg.payload[:1] != bytes([n % 256]):
                    return ("CORRUPT", f"message {n}: seq {msg.seq}, {len(msg.payload)} bytes")
                n += 1
            return None if n == count else ("CORRUPT", f"{n} of {count} messages")
        self.call("server_stream_1mib" if big else "server_stream", fn, member)


class BidiWorker(EchoWorker):
    """Bidi streams of 16 messages, the 8th of 1 MiB; replies must come back in order."""
    kind = "bidi"
    pause_s = 0.05

    def one(self):
        pb2 = self.stubs.echo_pb2
        sizes = [MIB if i == 7 else 512 for i in range(16)]
        member = [None]

        def fn():
            reqs = (pb2.Msg(seq=i, payload=bytes([i]) * s) for i, s in enumerate(sizes))
            n = 0
            for msg in self.stub.Bidi(reqs, timeout=CALL_TIMEOUT_S):
                member[0] = msg.server
                if msg.seq != n or len(msg.payload) != sizes[n]:
                    return ("CORRUPT", f"reply {n}: seq {msg.seq}, {len(msg.payload)} bytes")
                n += 1
            return None if n == len(sizes) else ("CORRUPT", f"{n} of {len(sizes)} replies")
        self.call("bidi", fn, member)


class TlsWorker(Worker):
    """Unary calls over the TLS listener, a new connection (handshake) every 20 calls."""
    kind = "tls_unary"
    pause_s = 0.02

    def __init__(self, ledger, stop, stubs, port, ca_pem):
        super().__init__(ledger, stop)
        self.stubs = stubs
        self.port = port
        self.ca_pem = ca_pem
        self.channel = None

    def one(self):
        if self.channel is None or self.seq % 20 == 0:
            if self.channel is not None:
                self.channel.close()
            self.channel = tls_channel(self.port, self.ca_pem)
            self.stub = self.stubs.echo_grpc.EchoStub(self.channel)
        pb2 = self.stubs.echo_pb2

        def fn():
            r = self.stub.Unary(pb2.Msg(seq=self.seq, payload=b"tls"), timeout=CALL_TIMEOUT_S)
            return None if r.payload == b"tls" else ("CORRUPT", f"reply {r.payload[:20]!r}")
        self.call("tls_unary", fn)


class EtcdPutWorker(Worker):
    """Put a fresh key under PREFIX, then read it back linearizably: the read must see it.

    acked holds (revision, key, monotonic time of the ack) of every acknowledged put,
    the ground truth the watches are checked against."""
    kind = "etcd_put"
    cluster = "etcd"
    pause_s = 0.02

    def __init__(self, ledger, stop, stubs, port):
        super().__init__(ledger, stop)
        self.stubs = stubs
        self.port = port
        self.tag = uuid.uuid4().hex[:8]
        self.acked = []
        self._lock = threading.Lock()

    def setup(self):
        self.channel = insecure_channel(self.port)
        self.kv = self.stubs.etcd_grpc.KVStub(self.channel)

    def acked_before(self, t):
        """Highest revision acknowledged before monotonic time t (0 if none)."""
        with self._lock:
            best = 0
            for rev, _, at in reversed(self.acked):
                if at < t:
                    best = max(best, rev)
                    break
            return best

    def one(self):
        pb2 = self.stubs.etcd_pb2
        key = PREFIX + b"%09d" % self.seq
        value = f"{self.tag}-{self.seq}".encode()
        rev = [0]

        def put():
            r = self.kv.Put(pb2.PutRequest(key=key, value=value), timeout=ETCD_TIMEOUT_S)
            rev[0] = r.header.revision
            with self._lock:
                self.acked.append((rev[0], key, time.monotonic()))
        self.call("etcd_put", put)
        if not rev[0]:
            return

        def get():
            r = self.kv.Range(pb2.RangeRequest(key=key), timeout=ETCD_TIMEOUT_S)
            if len(r.kvs) != 1 or r.kvs[0].value != value or r.kvs[0].mod_revision != rev[0]:
                return ("STALE", f"read of {key!r} after put at rev {rev[0]}: {list(r.kvs)[:1]}")
            return None
        self.call("etcd_get", get)

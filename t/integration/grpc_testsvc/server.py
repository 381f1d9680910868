#!/usr/bin/python3
"""sidemuxtest.Echo server for sidemux's integration tests.

    /usr/bin/python3 server.py --port 0 --name s1 [--gen-dir DIR]

Binds 127.0.0.1, prints its real port on stdout (the readiness line), and
serves until SIGTERM. Every reply carries the server's name. GetStats reports
per-method counts of started calls and of calls whose handler completed
normally, how many calls the server saw cancelled, and Slow-call events
(started / cancelled / finished with their CLOCK_MONOTONIC times), so tests can
assert server-side facts. Without --gen-dir the proto is compiled into a
temporary directory.
"""

import argparse
import functools
import hashlib
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

import grpc_testsvc  # noqa: E402


def meta_list(pb2, metadata):
    out = []
    for key, value in metadata or ():
        out.append(pb2.Meta(key=key, value=value if isinstance(value, bytes) else value.encode()))
    return out


def to_grpc_metadata(entries):
    return tuple((m.key, m.value if m.key.endswith("-bin") else m.value.decode()) for m in entries)


class Tracker:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.ok = {}
        self.started = {}
        self.events = []
        self.cancelled = 0

    def event(self, call_id, method, kind):
        with self.lock:
            self.events.append((call_id, method, time.monotonic(), kind))

    def begin(self, method, context, call_id=""):
        """Count the call; returns a state dict whose 'running' the handler clears when it exits."""
        state = {"running": True, "cancelled": threading.Event()}
        with self.lock:
            self.started[method] = self.started.get(method, 0) + 1

        def on_done():
            # Runs when the RPC terminates. If the handler is still running the
            # RPC ended under it: the client (or the proxy) cancelled it.
            if state["running"]:
                with self.lock:
                    self.cancelled += 1
                    self.events.append((call_id, method, time.monotonic(), "cancelled"))
                state["cancelled"].set()

        context.add_callback(on_done)
        return state

    def end(self, method, state, ok):
        state["running"] = False
        if ok:
            with self.lock:
                self.ok[method] = self.ok.get(method, 0) + 1


def tracked(method):
    """Wrap a unary- or stream-response handler with the tracker's bookkeeping."""

    def deco(fn):
        @functools.wraps(fn)
        def unary(self, request, context):
            state = self.tracker.begin(method, context, getattr(request, "call_id", ""))
            ok = False
            try:
                result = fn(self, request, context, state)
                ok = True
                return result
            finally:
                self.tracker.end(method, state, ok)

        @functools.wraps(fn)
        def streaming(self, request, context):
            state = self.tracker.begin(method, context)
            ok = False
            try:
                yield from fn(self, request, context, state)
                ok = True
            finally:
                self.tracker.end(method, state, ok)

        return streaming if inspect.isgeneratorfunction(fn) else unary

    return deco


def make_servicer(pb2, pb2_grpc, name):
    class Echo(pb2_grpc.EchoServicer):
        def __init__(self):
            self.tracker = Tracker(name)

        @tracked("Unary")
        def Unary(self, request, context, state):
            if request.reply_initial:
                context.send_initial_metadata(to_grpc_metadata(request.reply_initial))
            if request.reply_trailing:
                context.set_trailing_metadata(to_grpc_metadata(request.reply_trailing))
            return pb2.Msg(seq=request.seq, payload=request.payload, server=name, text=request.text,
                           received=meta_list(pb2, context.invocation_metadata()),
                           payload_sha256=hashlib.sha256(request.payload).hexdigest())

        @tracked("ServerStream")
        def ServerStream(self, request, context, state):
            for i in range(request.count):
                yield pb2.Msg(seq=i, payload=bytes([i % 256]) * request.size, server=name)

        @tracked("ClientStream")
        def ClientStream(self, request_iterator, context, state):
            h = hashlib.sha256()
            count = total = 0
            first = last = 0.0
            for msg in request_iterator:
                last = time.monotonic()
                if count == 0:
                    first = last
                count += 1
                total += len(msg.payload)
                h.update(msg.payload)
            return pb2.Summary(count=count, bytes=total, server=name, sha256=h.hexdigest(),
                               first_at=first, last_at=last)

        @tracked("Bidi")
        def Bidi(self, request_iterator, context, state):
            for msg in request_iterator:
                yield pb2.Msg(seq=msg.seq, payload=msg.payload, server=name, text=msg.text)

        @tracked("Status")
        def Status(self, request, context, state):
            if request.send_headers_first:
                context.send_initial_metadata((("x-status-server", name),))
            context.set_trailing_metadata(to_grpc_metadata(request.trailing))
            code = next(c for c in grpc.StatusCode if c.value[0] == request.code)
            if code is grpc.StatusCode.OK:
                return pb2.Msg(server=name)
            context.abort(code, request.message)

        @tracked("Slow")
        def Slow(self, request, context, state):
            context.send_initial_metadata((("x-server", name), ("x-call-id", request.call_id)))
            self.tracker.event(request.call_id, "Slow", "started")
            if state["cancelled"].wait(request.ms / 1000.0):
                return pb2.Msg(server=name, text="cancelled")
            self.tracker.event(request.call_id, "Slow", "finished")
            return pb2.Msg(server=name, text=request.call_id)

        @tracked("Ticker")
        def Ticker(self, request, context, state):
            interval = (request.interval_ms or 100) / 1000.0
            start = time.monotonic()
            for i in range(request.count):
                # On a fixed schedule, so a blocked send shows up as lateness.
                delay = start + i * interval - time.monotonic()
                if delay > 0 and state["cancelled"].wait(delay):
                    return
                yield pb2.Tick(seq=i, sent_at=time.monotonic(), server=name)

        @tracked("Download")
        def Download(self, request, context, state):
            size = request.chunk_bytes or (1 << 20)
            total = request.mib << 20
            data = b"\xab" * size
            seq = 0
            while total > 0:
                n = min(size, total)
                yield pb2.Chunk(seq=seq, data=data if n == size else data[:n], server=name)
                total -= n
                seq += 1

        @tracked("Upload")
        def Upload(self, request_iterator, context, state):
            md = dict(context.invocation_metadata())
            delay = int(md.get("x-read-delay-ms", "0")) / 1000.0
            count = total = bad = 0
            first = last = 0.0
            while True:
                if delay:
                    time.sleep(delay)
                try:
                    chunk = next(request_iterator)
                except StopIteration:
                    break
                last = time.monotonic()
                if count == 0:
                    first = last
                if chunk.seq != count:
                    bad += 1
                count += 1
                total += len(chunk.data)
            return pb2.Summary(count=count, bytes=total, server=name, first_at=first, last_at=last,
                               sha256=f"out_of_order={bad}")

        def GetStats(self, request, context):
            t = self.tracker
            with t.lock:
                return pb2.Stats(
                    server=name, ok=dict(t.ok), started=dict(t.started), cancelled=t.cancelled,
                    events=[pb2.Event(call_id=c, method=m, at=a, kind=k) for c, m, a, k in t.events])

    return Echo()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", required=True)
    ap.add_argument("--gen-dir", default="")
    ap.add_argument("--max-workers", type=int, default=256)
    args = ap.parse_args()

    tmp = None
    gen_dir = args.gen_dir
    if not gen_dir:
        tmp = tempfile.mkdtemp(prefix="sidemuxtest-gen-")
        gen_dir = tmp
    try:
        pb2, pb2_grpc = grpc_testsvc.generate(gen_dir)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.max_workers),
                             options=grpc_testsvc.GRPC_MESSAGE_OPTIONS + [("grpc.so_reuseport", 0)])
        pb2_grpc.add_EchoServicer_to_server(make_servicer(pb2, pb2_grpc, args.name), server)
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
        if port == 0:
            print(f"cannot bind 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
            return 1
        server.start()
        stopped = threading.Event()

        def on_term(signum, frame):
            stopped.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        print(port, flush=True)
        while not stopped.wait(0.5):
            pass
        server.stop(grace=None).wait(5)
        return 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

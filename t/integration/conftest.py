"""Shared fixtures and helpers for the sidemux integration tests.

The tests drive the real binary named by $SIDEMUX_BIN. Everything listens on
127.0.0.1, every listener in a test config uses port 0 and the real port is read
from the binary's "listening" log line. Every process a test starts is stopped
by PID at teardown (SIGTERM, up to 10 s, then SIGKILL), also when it fails.

Helpers are plain functions and classes in this module; test files import them
with `from conftest import ...` (pytest puts this directory on sys.path).
"""

import json
import os
import re
import resource
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from procs import STOP_TIMEOUT, stop_process  # noqa: F401  (re-exported for the tests)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds to wait for every listener's "listening" line

# --------------------------------------------------------------------------
# The binary


def sidemux_binary():
    path = os.environ.get("SIDEMUX_BIN", "")
    if not path:
        pytest.fail("SIDEMUX_BIN is not set: point it at the built sidemux binary")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"SIDEMUX_BIN={path!r} is not an executable file")
    # Absolute: tests start it from other working directories.
    return os.path.abspath(path)


@pytest.fixture
def sidemux_bin():
    return sidemux_binary()


# --------------------------------------------------------------------------
# A tiny YAML emitter (dicts, lists, strings, numbers, booleans, None)


def _yaml_scalar(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def to_yaml(obj, indent=0):
    """Block-style YAML for a dict/list tree. Returns text ending with a newline."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(value, indent + 2).rstrip("\n"))
            elif isinstance(value, dict):
                lines.append(f"{pad}{key}: {{}}")
            elif isinstance(value, list):
                lines.append(f"{pad}{key}: []")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2).rstrip("\n").split("\n")
                # the first line of the item goes on the dash line
                lines.append(f"{pad}- {body[0][indent + 2:]}")
                lines.extend(body[1:])
            elif isinstance(item, dict):
                lines.append(f"{pad}- {{}}")
            elif isinstance(item, list):
                lines.append(f"{pad}- []")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines) + "\n"


def deep_merge(base, override):
    """A copy of base with override merged in (dicts recursively; other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def dead_port():
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def base_config(**overrides):
    """A minimal valid config: one listener `client` on port 0, one member on a dead port."""
    cfg = {
        "listeners": [{"name": "client", "address": f"{HOST}:0"}],
        "cluster": {"members": [{"name": "m1", "address": f"{HOST}:{dead_port()}"}]},
    }
    return deep_merge(cfg, overrides)


# --------------------------------------------------------------------------
# The runner


class StartError(Exception):
    pass


class Sidemux:
    """One sidemux process run from a config dict or YAML string."""

    def __init__(self, binary, workdir, config, name="sidemux", args=None):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.config_path = os.path.join(str(workdir), f"{name}.yaml")
        self.write_config(config)
        self.args = args
        self.proc = None
        self._lines = []  # stderr lines (str, without newline)
        self._last_line_at = 0.0  # time.monotonic() of the last line read
        self._stdout = []
        self._cond = threading.Condition()
        self._threads = []
        self.addresses = {}  # listener name -> (host, port)
        self.expect_failure = False  # set by tests that make it fail on purpose

    # config -----------------------------------------------------------
    def write_config(self, config):
        text = config if isinstance(config, str) else to_yaml(config)
        self.config_text = text
        with open(self.config_path, "w") as f:
            f.write(text)

    # lifecycle ----------------------------------------------------------
    def start(self, wait=True, timeout=START_TIMEOUT):
        args = self.args if self.args is not None else ["-c", self.config_path]
        self.proc = subprocess.Popen(
            [self.binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(self.workdir),
        )
        for stream, sink in ((self.proc.stderr, self._lines), (self.proc.stdout, self._stdout)):
            t = threading.Thread(target=self._reader, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        if wait:
            self.wait_listening(timeout=timeout)
        return self

    def _reader(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                sink.append(line)
                self._last_line_at = time.monotonic()
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def listener_names(self):
        """Names of the listeners in the config (top-level `listeners:` block)."""
        m = re.search(r"^listeners:[ \t]*\n((?:[ \t-].*\n|\n)*)", self.config_text, re.M)
        names = re.findall(r"name:\s*\"?([A-Za-z0-9_.-]+)\"?", m.group(1)) if m else []
        return names or ["client"]

    def wait_listening(self, names=None, timeout=START_TIMEOUT):
        """Block until a "listening" line was logged for every listener name."""
        names = list(names or self.listener_names())
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self._parsed(self._lines):
                    if entry.get("msg") == "listening" and entry.get("listener") in names:
                        lname = entry["listener"]
                        if lname not in self.addresses:
                            self.addresses[lname] = parse_host_port(entry["address"])
                if all(n in self.addresses for n in names):
                    return self.addresses
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise StartError(
                        f"sidemux exited with {self.proc.returncode} before listening; "
                        f"stderr:\n" + "\n".join(self._lines) + "\nstdout:\n" + "\n".join(self._stdout))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StartError(
                        f"no 'listening' line for {names} within {timeout}s; stderr so far:\n"
                        + "\n".join(self._lines))
                self._cond.wait(min(remaining, 0.2))

    def wait_exit(self, timeout):
        """Wait for the process to exit on its own; returns the code or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """SIGTERM (or sig), wait up to timeout, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        code = stop_process(self.proc, sig, timeout)
        for t in self._threads:
            t.join(timeout=5)
        return code

    def kill_if_running(self):
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    # accessors ----------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    @property
    def port(self):
        """Port of the listener named client (or the first one)."""
        if "client" in self.addresses:
            return self.addresses["client"][1]
        return next(iter(self.addresses.values()))[1]

    def port_of(self, listener):
        return self.addresses[listener][1]

    def raw_lines(self):
        with self._cond:
            return list(self._lines)

    def stdout_lines(self):
        with self._cond:
            return list(self._stdout)

    @staticmethod
    def _parsed(lines):
        out = []
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    # sidemux's log writer sends a line within about 10 ms of its logging
    # (it gathers bursts: proxy/core/log_ring.h); this much quiet, from the
    # call on, means every line logged before the call has arrived.
    LOG_SETTLE_S = 0.15

    def log_lines(self, since=0):
        """stderr lines (after the first `since`) that are JSON objects, parsed, once every
        line logged before the call has arrived (the log was quiet for LOG_SETTLE_S; at
        most 2 s)."""
        start = time.monotonic()
        with self._cond:
            while True:
                now = time.monotonic()
                quiet = now - max(start, self._last_line_at)
                if quiet >= self.LOG_SETTLE_S or now - start >= 2.0 or self.proc is None or (
                        self.proc.poll() is not None and all(not t.is_alive() for t in self._threads)):
                    return self._parsed(self._lines[since:])
                self._cond.wait(self.LOG_SETTLE_S - quiet)

    def wait_log(self, predicate, timeout=10.0):
        """Wait until a parsed log line satisfies predicate; returns it or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self._parsed(self._lines):
                    if predicate(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and
                                      all(not t.is_alive() for t in self._threads)):
                    return None
                self._cond.wait(min(remaining, 0.2))

    def wait_lines(self, predicate, count, since=0, timeout=5.0):
        """The parsed log lines after the first `since` raw lines that satisfy
        predicate, once `count` of them are there (or the timeout passed).
        Lines leave sidemux through its logger's writer thread, so the line of
        a call that just returned may not be written yet."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self._parsed(self._lines[since:]) if predicate(e)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(min(remaining, 0.2))

    def get(self, path, **kw):
        return http_request(self.port, path, **kw)

    def metrics(self, path="/metrics"):
        resp = http_request(self.port, path)
        assert resp.status == 200, f"GET {path} -> {resp.status} {resp.body[:200]!r}"
        return parse_metrics(resp.body.decode())


@pytest.fixture
def sidemux_factory(sidemux_bin, tmp_path):
    """make(config=None, start=True, name=..., args=None) -> Sidemux; all stopped at teardown."""
    started = []

    def make(config=None, start=True, name=None, args=None):
        name = name or f"sidemux{len(started)}"
        sm = Sidemux(sidemux_bin, tmp_path, config if config is not None else base_config(),
                     name=name, args=args)
        started.append(sm)
        if start:
            sm.start()
        return sm

    yield make
    problems = []
    for sm in started:
        if sm.proc is None:
            continue
        code = sm.stop() if sm.proc.poll() is None else sm.proc.returncode
        report = sanitizer_report(sm.raw_lines())
        # A clean shutdown is part of every test: a leak or a sanitizer
        # finding at exit fails the test that caused it.
        if report:
            problems.append(f"{sm.name}: sanitizer report:\n{report}")
        elif code not in (0, None) and not sm.expect_failure:
            problems.append(f"{sm.name}: exit code {code}; stderr tail:\n" + "\n".join(sm.raw_lines()[-20:]))
    assert not problems, "\n\n".join(problems)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")


def sanitizer_report(lines):
    """The sanitizer's lines from a process's stderr, or '' when there are none."""
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[i:i + 60])
    return ""


@pytest.fixture
def sidemux(sidemux_factory):
    """A running sidemux with the minimal config."""
    return sidemux_factory()


# --------------------------------------------------------------------------
# Raw sockets


def parse_host_port(text):
    m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", text)
    assert m, f"bad address in log: {text!r}"
    return m.group(1), int(m.group(2))


def connect(port, timeout=10.0, nodelay=True):
    s = socket.create_connection((HOST, port), timeout=timeout)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_bytes(sock, data):
    """sendall that tolerates the peer closing first. Returns True if all was sent."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def wait_members_up(sm, names, timeout=10.0):
    """Poll sm.metrics() until every member in `names` is up; returns the last metrics.
    `sm`: a Sidemux, or anything with .metrics() and .proc."""
    deadline = time.monotonic() + timeout
    up = {}
    for _ in range(int(timeout / 0.05) + 10):
        last = sm.metrics()
        up = {n: last.sum("sidemux_member_up", member=n) for n in names}
        if all(v >= 1 for v in up.values()):
            return last
        assert sm.proc.poll() is None, f"sidemux exited (code {sm.proc.returncode})"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"members not up within {timeout}s: {up}")


def read_until_close(sock, timeout=5.0, limit=16 << 20):
    """Read until the peer closes or the deadline passes.

    Returns (data, closed): closed is "eof", "reset", or None when the deadline
    passed with the connection still open.
    """
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(buf), None
        r, _, _ = select.select([sock], [], [], remaining)
        if not r:
            return bytes(buf), None
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(buf), "reset"
        except (BlockingIOError, InterruptedError):
            continue
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    return bytes(buf), None


def client_hello():
    """The bytes of a real TLS ClientHello (python's defaults) produced over memory BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:16]  # a TLS handshake record
    return hello


def is_closed_soon(sock, timeout=5.0):
    _, closed = read_until_close(sock, timeout)
    return closed is not None


# --------------------------------------------------------------------------
# HTTP/1


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), names as sent
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.version} {self.status} {self.headers} {self.body[:120]!r}>"


class ConnectionClosed(Exception):
    pass


class ResponseReader:
    """Reads consecutive (pipelined) HTTP/1 responses from one socket."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out reading an HTTP/1 response")
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError("timed out reading an HTTP/1 response")
        try:
            chunk = self.sock.recv(1 << 18)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if self.eof or not self._fill(deadline):
                raise ConnectionClosed(f"connection closed mid-line; buffered {bytes(self.buf[:200])!r}")

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if self.eof or not self._fill(deadline):
                raise ConnectionClosed(f"connection closed with {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_response(self, head=False, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        if not self.buf and self.eof:
            raise ConnectionClosed("connection closed before a response")
        while not self.buf:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed before a response")
        status_line = self._read_line(deadline).decode("latin-1")
        m = re.fullmatch(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?", status_line)
        if not m:
            raise AssertionError(f"bad status line {status_line!r}")
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = []
        while True:
            line = self._read_line(deadline).decode("latin-1")
            if line == "":
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise AssertionError(f"bad header line {line!r}")
            headers.append((name, value.strip()))
        resp = Response(version, status, reason, headers, b"")
        if head or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                size = int(self._read_line(deadline).split(b";")[0], 16)
                if size == 0:
                    while self._read_line(deadline) != b"":
                        pass
                    break
                body += self._read_exact(size, deadline)
                assert self._read_line(deadline) == b""
            resp.body = bytes(body)
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length")), deadline)
        else:
            while not self.eof:
                self._fill(deadline)
            resp.body = bytes(self.buf)
            self.buf.clear()
        return resp


def build_request(path, method="GET", headers=None, body=b"", version="HTTP/1.1"):
    hdrs = {"Host": f"{HOST}"}
    if headers:
        hdrs.update(headers)
    if body and "Content-Length" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + body


def http_request(port, path, method="GET", headers=None, body=b"", version="HTTP/1.1", timeout=10.0):
    """One request on a fresh connection (Connection: close). Returns a Response."""
    hdrs = {"Connection": "close"}
    if headers:
        hdrs.update(headers)
    with connect(port, timeout=timeout) as s:
        s.sendall(build_request(path, method, hdrs, body, version))
        return ResponseReader(s, timeout).read_response(head=(method == "HEAD"))


def wait_http_ok(port, path="/livez", timeout=5.0):
    """Poll until GET path answers 200 (bounded by count and time). Returns the last Response or error."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(500):
        try:
            last = http_request(port, path, timeout=max(0.5, deadline - time.monotonic()))
            if last.status == 200:
                return last
        except (OSError, ConnectionClosed, TimeoutError) as e:
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return last


# --------------------------------------------------------------------------
# Prometheus text format

_SAMPLE_RE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _parse_labels(text):
    labels = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        if not m:
            raise ValueError(f"bad label set {text!r}")
        labels[m.group(1)] = bytes(m.group(2), "utf-8").decode("unicode_escape")
        pos = m.end()
    return labels


class Metrics(dict):
    """{(name, ((label, value), ...)): float} plus the # TYPE and # HELP lines seen."""

    def __init__(self):
        super().__init__()
        self.types = {}
        self.helps = {}

    def value(self, name, **labels):
        """The value of the one series with exactly these labels, or None."""
        return self.get((name, tuple(sorted(labels.items()))))

    def sum(self, name, **labels):
        """Sum over every series of name whose labels include the given ones (0 if none)."""
        total = 0.0
        for (n, lbls), v in self.items():
            d = dict(lbls)
            if n == name and all(d.get(k) == val for k, val in labels.items()):
                total += v
        return total

    def series(self, name):
        return {lbls: v for (n, lbls), v in self.items() if n == name}

    def names(self):
        return {n for n, _ in self.keys()} | set(self.types)


def parse_metrics(text):
    """Parse Prometheus text format 0.0.4; raises ValueError on a malformed line."""
    out = Metrics()
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "HELP":
                out.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"malformed metrics line {line!r}")
        labels = _parse_labels(m.group(2)) if m.group(2) else {}
        out[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(3))
    return out


# --------------------------------------------------------------------------
# HTTP/2 (python h2)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class StreamResult:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None  # list of (name, value)
        self.data = bytearray()
        self.trailers = None
        self.ended = False
        self.reset = None  # error code of a RST_STREAM
        self.events = []  # names of the events seen, in order

    def header(self, name):
        for k, v in self.headers or []:
            if k == name:
                return v
        return None

    @property
    def status(self):
        v = self.header(":status")
        return int(v) if v is not None else None

    @property
    def done(self):
        return self.ended or self.reset is not None


class H2Client:
    """A client HTTP/2 connection with prior knowledge over a plain socket."""

    def __init__(self, port, timeout=10.0, settings=None):
        import h2.config
        import h2.connection
        self.port = port
        self.timeout = timeout
        self.sock = connect(port, timeout=timeout)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        if settings:
            self.conn.local_settings.update(settings)
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.goaway = None  # ConnectionTerminated event
        self.closed = False
        self.remote_settings_seen = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, path, method="GET", headers=(), body=None, flush=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":path", path),
                (":authority", f"{HOST}:{self.port}")] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.streams[sid] = StreamResult(sid)
        if flush:
            self.flush()
        return sid

    def grpc_request(self, path, message=b"", flush=True):
        frame = b"\x00" + len(message).to_bytes(4, "big") + message
        return self.request(path, "POST", [("content-type", "application/grpc"), ("te", "trailers")],
                            frame, flush=flush)

    def pump(self, deadline):
        """Read once (until deadline) and process the events. False when the connection closed."""
        import h2.events
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting on the HTTP/2 connection")
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError("timed out waiting on the HTTP/2 connection")
        try:
            data = self.sock.recv(1 << 18)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            sid = getattr(ev, "stream_id", None)
            st = self.streams.get(sid) if sid else None
            if st is not None:
                st.events.append(type(ev).__name__)
            if isinstance(ev, h2.events.ResponseReceived):
                st.headers = list(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                st.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st.reset = ev.error_code
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
        self.flush()
        return True

    def wait_settings(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.remote_settings_seen:
            if not self.pump(deadline):
                raise ConnectionClosed("connection closed before the server's SETTINGS")

    def wait(self, sids=None, timeout=None):
        """Wait until every stream in sids (default: all) ended or was reset."""
        deadline = time.monotonic() + (timeout or self.timeout)
        sids = list(self.streams) if sids is None else list(sids)
        while not all(self.streams[s].done for s in sids):
            if not self.pump(deadline):
                raise ConnectionClosed(
                    f"connection closed with streams open: "
                    f"{[s for s in sids if not self.streams[s].done]}; goaway={self.goaway}")
        return [self.streams[s] for s in sids]

    def get(self, path, timeout=None):
        sid = self.request(path)
        return self.wait([sid], timeout)[0]


def parse_frames(data):
    """Split raw HTTP/2 bytes into (type, flags, stream_id, payload); stops at a partial frame."""
    frames = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        ftype, flags = data[pos + 3], data[pos + 4]
        sid = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        if pos + 9 + length > len(data):
            break
        frames.append((ftype, flags, sid, data[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return frames


FRAME_GOAWAY = 0x7


# --------------------------------------------------------------------------
# Misc


def raise_nofile(want):
    """Raise RLIMIT_NOFILE's soft limit to at least want (up to the hard limit). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def find_keys(obj, pred, path=""):
    """All (path, value) in a JSON tree whose key satisfies pred(key)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            if pred(str(k)):
                found.append((p, v))
            found.extend(find_keys(v, pred, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found.extend(find_keys(v, pred, f"{path}[{i}]"))
    return found


def run(args, timeout=20.0, **kw):
    """subprocess.run with a timeout (the child is killed by PID when it expires)."""
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, **kw)

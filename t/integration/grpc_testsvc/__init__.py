"""The sidemuxtest.Echo test service: proto compilation at test time and a server runner.

`generate(outdir)` compiles echo.proto with `/usr/bin/python3 -m grpc_tools.protoc`
into outdir and returns the (echo_pb2, echo_pb2_grpc) modules. Nothing
generated lives in the source tree.

`EchoServer` runs server.py as a subprocess (`server.py --port 0 --name NAME`),
reads the real port from its readiness line on stdout and stops it by PID.
"""

import importlib
import os
import subprocess
import sys
import threading

from procs import free_ports, stop_process  # t/integration is on sys.path (pytest; server.py adds it)

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "echo.proto")
SERVER = os.path.join(HERE, "server.py")
PYTHON = "/usr/bin/python3"  # the interpreter that has grpcio and grpc_tools

MAX_MESSAGE = 64 << 20  # max send/receive message size on both ends
GRPC_MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


def compile_proto(proto, outdir, module):
    """Compile proto into outdir (once) and import module_pb2 and module_pb2_grpc."""
    os.makedirs(outdir, exist_ok=True)
    if not os.path.exists(os.path.join(outdir, f"{module}_pb2_grpc.py")):
        proc = subprocess.run(
            [PYTHON, "-m", "grpc_tools.protoc", f"-I{os.path.dirname(proto)}", f"--python_out={outdir}",
             f"--grpc_python_out={outdir}", proto],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"protoc failed ({proc.returncode}): {proc.stderr}")
    if outdir not in sys.path:
        sys.path.insert(0, outdir)
    importlib.invalidate_caches()
    return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")


def generate(outdir):
    """Compile echo.proto into outdir (once) and import the generated modules."""
    return compile_proto(PROTO, outdir, "echo")


class EchoServer:
    """One server.py subprocess. start() waits for its port line; stop() ends it by PID."""

    def __init__(self, name, gen_dir, port=0, max_workers=256):
        self.name = name
        self.gen_dir = gen_dir
        self.want_port = port
        self.max_workers = max_workers
        self.proc = None
        self.port = None
        self.stderr_lines = []
        self._threads = []

    def start(self, timeout=20.0):
        if not self.want_port:
            # A fixed port from below the ephemeral range, so that a restart
            # on it (members killed and started again) cannot collide with a
            # client's source port (procs.free_ports).
            self.want_port = free_ports(1)[0]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [PYTHON, SERVER, "--port", str(self.want_port), "--name", self.name,
             "--gen-dir", self.gen_dir, "--max-workers", str(self.max_workers)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        port_line = []
        got = threading.Event()

        def read_stdout():
            for raw in iter(self.proc.stdout.readline, b""):
                if not got.is_set():
                    port_line.append(raw.decode().strip())
                    got.set()
            got.set()

        def read_stderr():
            for raw in iter(self.proc.stderr.readline, b""):
                self.stderr_lines.append(raw.decode("utf-8", "replace").rstrip())

        for fn in (read_stdout, read_stderr):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        if not got.wait(timeout) or not port_line or not port_line[0].isdigit():
            self.stop()
            raise RuntimeError(f"echo server {self.name} did not report a port within {timeout}s: "
                               f"stdout={port_line} stderr={self.stderr_lines[-20:]}")
        self.port = int(port_line[0])
        return self

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=timeout)
        for t in self._threads:
            t.join(timeout=2)
        return code

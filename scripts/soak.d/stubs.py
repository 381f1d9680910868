"""gRPC stubs compiled at run time: sidemuxtest.Echo (t/integration/grpc_testsvc) and
the etcd subset in etcd_kv.proto, plus the channel options every soak client uses."""

import importlib
import os
import subprocess
import sys

import grpc

import grpc_testsvc

HERE = os.path.dirname(os.path.abspath(__file__))
ETCD_PROTO = os.path.join(HERE, "etcd_kv.proto")


class Stubs:
    def __init__(self, gen_dir):
        self.gen_dir = gen_dir
        self.echo_pb2, self.echo_grpc = grpc_testsvc.generate(gen_dir)
        self.etcd_pb2, self.etcd_grpc = _generate_etcd(gen_dir)


def _generate_etcd(outdir):
    if not os.path.exists(os.path.join(outdir, "etcd_kv_pb2_grpc.py")):
        proc = subprocess.run(
            [grpc_testsvc.PYTHON, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={outdir}",
             f"--grpc_python_out={outdir}", ETCD_PROTO],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"protoc failed ({proc.returncode}): {proc.stderr}")
    if outdir not in sys.path:
        sys.path.insert(0, outdir)
    importlib.invalidate_caches()
    return importlib.import_module("etcd_kv_pb2"), importlib.import_module("etcd_kv_pb2_grpc")


def channel_options():
    # Own subchannel per channel (one TCP connection each), no proxy from the
    # environment, and room for 1 MiB messages in both directions.
    return list(grpc_testsvc.GRPC_MESSAGE_OPTIONS) + [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_http_proxy", 0),
    ]


def insecure_channel(port):
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())


def tls_channel(port, ca_pem, server_name="localhost"):
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    opts = channel_options() + [("grpc.ssl_target_name_override", server_name)]
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=opts)

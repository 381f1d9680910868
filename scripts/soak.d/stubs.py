"""gRPC stubs compiled at run time: sidemuxtest.Echo (t/integration/grpc_testsvc) and
the etcd subset in etcd_kv.proto, plus the channel options every soak client uses."""

import os

import grpc

import grpc_testsvc

HERE = os.path.dirname(os.path.abspath(__file__))
ETCD_PROTO = os.path.join(HERE, "etcd_kv.proto")


class Stubs:
    def __init__(self, gen_dir):
        self.gen_dir = gen_dir
        self.echo_pb2, self.echo_grpc = grpc_testsvc.generate(gen_dir)
        self.etcd_pb2, self.etcd_grpc = grpc_testsvc.compile_proto(ETCD_PROTO, gen_dir, "etcd_kv")


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

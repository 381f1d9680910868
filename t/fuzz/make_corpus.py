"""Write the hand-made seeds of t/fuzz/corpus/ (the real captures are kept as
files: real_*.bin, see t/fuzz/README.md). Re-run after changing a target's
input layout:

    python3 t/fuzz/make_corpus.py
"""

import os
import ssl
import struct

import h2.config
import h2.connection

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def client_hello():
    """A real TLS ClientHello from Python's OpenSSL, offering h2 and http/1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="etcd.local")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def http2_settings():
    # SETTINGS (type 4) with MAX_CONCURRENT_STREAMS=100, then a WINDOW_UPDATE.
    settings = struct.pack(">HI", 3, 100)
    frame = struct.pack(">I", len(settings))[1:] + b"\x04\x00" + struct.pack(">I", 0) + settings
    window = struct.pack(">I", 4)[1:] + b"\x08\x00" + struct.pack(">I", 0) + struct.pack(">I", 1 << 20)
    return frame + window


REQUESTS = {
    "get_health": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    "head_metrics_http10": b"HEAD /metrics HTTP/1.0\r\n\r\n",
    "post_gateway_put": (b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 30\r\n\r\n{\"key\":\"Zm9v\",\"value\":\"YmFy\"}\n"),
    "post_chunked": (b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n"),
    "pipelined": (b"GET /readyz HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\nConnection: close\r\n\r\n"),
    "upgrade_websocket": (b"GET /v3/watch HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
}

RESPONSES = {
    "content_length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "chunked_trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n"
                         b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nGrpc-Status: 0\r\n\r\n"),
    "continue_then_final": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "not_modified_pipelined": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
                               b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
    "switching_protocols": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello"),
    "until_close_http10": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until close",
    "service_unavailable": (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 43\r\n\r\n{\"error\":\"etcdserver: no leader\",\"code\":14}"),
}

GRPC = {
    "timeout_ms": b"200m",
    "timeout_hours_max": b"99999999H",
    "timeout_nanos": b"1n",
    "message": "member m2 has no leader: 100% \u00e9\n".encode(),
    "unary_health": b"\x00\x00\x00\x00\x02\x08\x01",
    "unary_empty": b"\x00\x00\x00\x00\x00",
    "status_code": struct.pack("<i", 14),
}


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def field(number, wire_type, payload):
    return varint(number << 3 | wire_type) + payload


def string(number, s):
    return field(number, 2, varint(len(s)) + s)


ETCD = {
    "learner": (string(1, field(2, 0, varint(42)) + field(4, 0, varint(3))) + field(4, 0, varint(7))
                + field(10, 0, varint(1))),
    "alarm_nospace": string(1, field(2, 0, varint(7))) + field(4, 0, varint(7)) + string(8, b"NOSPACE"),
    "unknown_fields": (string(11, b"3.6.0") + field(13, 1, bytes(8)) + field(14, 5, bytes(4))
                       + field(15, 3, field(4, 0, varint(99))) + field(15, 4, b"") + field(4, 0, varint(1))),
}


GRPC_REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1:2379"),
                (":path", "/etcdserverpb.KV/Range"), ("content-type", "application/grpc"), ("te", "trailers"),
                ("grpc-timeout", "5S")]
GRPC_MESSAGE = b"\x00\x00\x00\x00\x05\x0a\x03foo"


def h2_pair():
    """A client and a server python-h2 connection, past both prefaces; the
    client's preface and SETTINGS are returned too."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, validate_inbound_headers=False))
    client.initiate_connection()
    preface = client.data_to_send()
    server.initiate_connection()
    server.receive_data(preface)
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # SETTINGS ACK
    return client, server, preface


def h2_client_frames():
    """Client frame sequences after the preface: what h2_server is fed."""
    out = {}
    client, _, preface = h2_pair()
    client.send_headers(1, GRPC_REQUEST)
    client.send_data(1, GRPC_MESSAGE, end_stream=True)
    out["grpc_unary"] = (preface, client.data_to_send())

    client, _, preface = h2_pair()
    for sid, path in ((1, "/health"), (3, "/metrics"), (5, "/version"), (7, "/debug/vars")):
        client.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)],
                            end_stream=True)
    client.ping(b"12345678")
    out["local_paths_ping"] = (preface, client.data_to_send())

    client, _, preface = h2_pair()
    client.send_headers(1, GRPC_REQUEST)
    client.send_data(1, GRPC_MESSAGE)
    client.increment_flow_control_window(1 << 20)
    client.send_headers(3, GRPC_REQUEST)
    client.reset_stream(3)
    client.send_data(1, GRPC_MESSAGE, end_stream=True)
    client.close_connection()
    out["streams_reset_goaway"] = (preface, client.data_to_send())
    return out


def h2_member_answers():
    """Server frame sequences answering stream 1: what h2_member is fed."""
    out = {}

    def answer(build):
        client, server, _ = h2_pair()
        client.send_headers(1, GRPC_REQUEST, end_stream=True)
        server.receive_data(client.data_to_send())
        server.data_to_send()
        server.initiate_connection()  # its SETTINGS again: the start of the script
        build(server)
        return server.data_to_send()

    def full(s):
        s.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
        s.send_data(1, GRPC_MESSAGE)
        s.send_headers(1, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)

    def trailers_only(s):
        s.send_headers(1, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14"),
                           ("grpc-message", "etcdserver: no leader")], end_stream=True)

    def reset(s):
        s.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
        s.reset_stream(1, 2)

    def goaway(s):
        s.ping(b"abcdefgh")
        s.close_connection(last_stream_id=0)

    for name, build in (("grpc_ok", full), ("trailers_only", trailers_only), ("reset", reset), ("goaway", goaway)):
        out[name] = answer(build)
    return out


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    # classify: byte 0 seeds the split (0: one piece, 1: byte by byte, 4: up to 8 bytes).
    write("classify", "http2_preface", b"\x04" + PREFACE + http2_settings())
    write("classify", "http2_preface_bytewise", b"\x01" + PREFACE)
    write("classify", "tls_client_hello", b"\x03" + client_hello())
    write("classify", "http1_get", b"\x00" + REQUESTS["get_health"])
    write("classify", "http1_pipelined", b"\x05" + REQUESTS["pipelined"])
    # http1_request: limits byte (0xff: largest), split seed, pause bits.
    for name, req in REQUESTS.items():
        write("http1_request", name, b"\xff\x00\x00" + req)
    write("http1_request", "pipelined_paused_small_pieces", b"\xff\x06\x01" + REQUESTS["pipelined"] * 2)
    # http1_response: limits, split seed, HEAD bits, pause bits.
    for name, resp in RESPONSES.items():
        write("http1_response", name, b"\xff\x00\x00\x00" + resp)
    write("http1_response", "head_answers", b"\xff\x05\x01\x02" + RESPONSES["content_length"] * 2)
    for name, data in GRPC.items():
        write("grpc", name, data)
    # h2_server: split seed; mode (bit 0: raw, the seed holds its preface;
    # bit 1: small limits); then frames.
    for name, (preface, frames) in h2_client_frames().items():
        write("h2_server", name, b"\x00\x00" + frames)
        write("h2_server", name + "_raw_pieces", b"\x05\x01" + preface + frames)
        write("h2_server", name + "_small_limits", b"\x00\x02" + frames)
    # h2_member: split seed; mode (bit 0: raw; bit 1: the request has a body).
    for name, frames in h2_member_answers().items():
        write("h2_member", name, b"\x00\x01" + frames)
    write("h2_member", "grpc_ok_body_pieces", b"\x04\x03" + h2_member_answers()["grpc_ok"])
    # http1_session: split seed; limit bits (7: 8 KiB requests).
    for name, req in REQUESTS.items():
        write("http1_session", name, b"\x00\x07" + req)
    write("http1_session", "pipelined_pieces_small_limit", b"\x03\x00" + REQUESTS["pipelined"] * 3)
    for name, data in ETCD.items():
        write("etcd_status", name, data)
    with open(os.path.join(HERE, "..", "..", "conf", "sidemux.yaml"), "rb") as f:
        write("config", "sample_sidemux_yaml", f.read())
    write("config", "minimal", b"listeners:\n  - name: client\n    address: 127.0.0.1:0\n"
                               b"cluster:\n  members:\n    - name: m1\n      address: 127.0.0.1:2379\n")
    write("config", "flow_style_tls", b"{listeners: [{name: c, address: '[::1]:2379', tls: {cert_file: a, "
                                      b"key_file: b, require_tls: false}}], workers: 2, cluster: {members: "
                                      b"[{name: m, address: 'etcd.local:2379'}], tls: {ca_file: c}}, "
                                      b"log: {level: debug, format: text}}\n")
    write("config", "bad_duration", b"limits:\n  drain_timeout: 99999999999999999999h\n")


if __name__ == "__main__":
    main()

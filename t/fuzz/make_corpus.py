"""Write the hand-made seeds of t/fuzz/corpus/ (the real captures are kept as
files: real_*.bin, see t/fuzz/README.md). Re-run after changing a target's
input layout:

    python3 t/fuzz/make_corpus.py
"""

import os
import ssl
import struct

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

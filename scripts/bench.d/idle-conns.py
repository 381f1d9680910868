"""Holds N idle HTTP/2 connections to 127.0.0.1:PORT, each after one request.

    /usr/bin/python3 idle-conns.py PORT N PATH BODY_FILE

Each connection sends one gRPC-shaped POST and reads its whole answer, then
stays open without a stream. Prints "ready OK FAILED" when all are set up and
keeps them open until stdin closes (scripts/bench measures the proxy's RSS in
between), then closes them all. Sequential on purpose: one connection at a
time puts no load spike on the proxy, and 1,000 take about a second.
"""

import socket
import sys

import h2.config
import h2.connection
import h2.events


def one(port, path, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "bench"), (":path", path),
                          ("content-type", "application/grpc"), ("te", "trailers")])
    conn.send_data(1, body, end_stream=True)
    s.sendall(conn.data_to_send())
    ok = False
    done = False
    while not done:
        data = s.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.TrailersReceived):
                ok = dict(ev.headers).get("grpc-status") == "0"
            elif isinstance(ev, h2.events.StreamEnded) or isinstance(ev, h2.events.StreamReset):
                done = True
        out = conn.data_to_send()
        if out:
            s.sendall(out)
    return s, conn, ok


def main():
    port, n, path, body_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(body_file, "rb") as f:
        body = f.read()
    held = []
    answered = 0
    for _ in range(n):
        try:
            s, conn, ok = one(port, path, body)
            held.append((s, conn))
            answered += 1 if ok else 0
        except OSError:
            pass
    # Connections held (what the RSS delta is divided by), then how many of
    # the n attempted got no grpc-status 0 answer (connect errors included).
    print("ready", len(held), n - answered, flush=True)
    sys.stdin.read()
    for s, _ in held:
        s.close()


main()

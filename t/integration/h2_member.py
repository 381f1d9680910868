"""Scaffolding for raw HTTP/2 members written with python h2 in the tests.

A subclass sets up its own state, then calls H2TestMember.__init__, which binds
a listening socket on 127.0.0.1:0 and starts the accept loop; every accepted
connection is served by `self._serve(sock)` on its own daemon thread (the
subclass's behaviour, which should return once `self.stopping` is set).

    class MyMember(H2TestMember):
        def __init__(self):
            self.lock = threading.Lock()
            super().__init__()

        def _serve(self, sock):
            ...
"""

import socket
import threading

HOST = "127.0.0.1"


class H2TestMember:
    reuse_address = False  # set SO_REUSEADDR on the listening socket

    def __init__(self, backlog=64):
        self.sock = socket.socket()
        if self.reuse_address:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(backlog)
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"{HOST}:{self.sock.getsockname()[1]}"

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, sock):
        raise NotImplementedError

    def close(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

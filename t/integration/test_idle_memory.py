"""What a quiet HTTP/2 connection holds: the worker gives back the empty buffers of connections
that read and wrote nothing for 10 s (core/session_memory.h), at its next 1 s tick."""

import time

import pytest

from conftest import H2Client, base_config, raise_nofile, rss_kib


def test_quiet_connections_give_their_empty_buffers_back(sidemux_factory):
    n = 300
    if raise_nofile(n + 200) < n + 100:  # before starting sidemux, which inherits the limit
        pytest.skip(f"RLIMIT_NOFILE hard limit too low for {n} connections")
    sm = sidemux_factory(base_config(workers=1))
    clients = []
    try:
        for _ in range(n):
            c = H2Client(sm.port)
            clients.append(c)
            assert c.get("/livez").status == 200
        held = rss_kib(sm.pid)
        # About 8 KiB per connection goes (its stream map and frame buffer);
        # at least half of that must, from 10 s after the last use.
        want = held - n * 4
        now = held
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = rss_kib(sm.pid)
            if now <= want:
                break
            time.sleep(0.5)
        assert now <= want, f"RSS {held} KiB with {n} quiet connections, {now} KiB after 30 s; wanted <= {want}"
        # The buffers come back on use: /metrics (over 4 KiB) is packed
        # across more than one of the frame buffer's pages.
        for c in clients[::30]:
            metrics = c.get("/metrics")
            assert metrics.status == 200 and len(metrics.data) > 4096, len(metrics.data)
            assert metrics.data.endswith(b"\n") and b"# TYPE process_start_time_seconds" in metrics.data
    finally:
        for c in clients:
            c.close()

"""Command line: --version, --check, start-up failures, probe."""

import json
import os
import re
import socket

import pytest

from conftest import HOST, Sidemux, base_config, dead_port, run, to_yaml

GOOD_CONFIG = """\
listeners:
  - name: client
    address: 127.0.0.1:0
cluster:
  members:
    - name: m1
      address: 127.0.0.1:12379
  connect_timeout: 2s
limits:
  max_connections: 100
  classify_timeout: 10s
workers: 1
"""


def _lines(proc):
    return [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]


def _error_lines(proc):
    """Lines reporting a failure: non-JSON lines, or JSON log lines at error/fatal level."""
    out = []
    for line in _lines(proc):
        try:
            entry = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(entry, dict) or str(entry.get("level", "")).lower() in (
                "error", "fatal", "critical", "crit"):
            out.append(line)
    return out


def test_version(sidemux_bin):
    proc = run([sidemux_bin, "--version"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, "no output on stdout"
    assert re.match(r"^sidemux \d+\.\d+\.\d+\b", lines[0]), lines[0]
    for lib in ("libuv", "nghttp2", "llhttp", "openssl"):
        assert re.search(lib + r"\D{0,20}\d+\.\d+(\.\d+)?", proc.stdout, re.I), \
            f"--version does not show the {lib} version:\n{proc.stdout}"


def test_check_good_config(sidemux_bin, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD_CONFIG)
    proc = run([sidemux_bin, "--check", "-c", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config ok" in _lines(proc), proc.stdout + proc.stderr


def test_check_good_config_long_option(sidemux_bin, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(to_yaml(base_config()))
    proc = run([sidemux_bin, "--check", "--config", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config ok" in _lines(proc)


# (id, replaced text, replacement, dotted key, 1-based line of the mistake)
MISTAKES = [
    ("bad-duration", "  connect_timeout: 2s", "  connect_timeout: 2 seconds", "cluster.connect_timeout", 8),
    ("bad-duration-unit", "  classify_timeout: 10s", "  classify_timeout: 10parsecs", "limits.classify_timeout", 11),
    ("bad-listener-port", "    address: 127.0.0.1:0", "    address: 127.0.0.1:99999", "listeners[0].address", 3),
    ("bad-listener-address", "    address: 127.0.0.1:0", "    address: not an address", "listeners[0].address", 3),
    ("member-without-port", "      address: 127.0.0.1:12379", "      address: 127.0.0.1", "cluster.members[0].address", 7),
    ("unknown-key", "  max_connections: 100", "  max_conections: 100", "limits.max_conections", 10),
    ("unknown-member-key", "      address: 127.0.0.1:12379", "      address: 127.0.0.1:12379\n      weight: 3",
     "cluster.members[0].weight", 8),
    ("wrong-type-int", "  max_connections: 100", "  max_connections: lots", "limits.max_connections", 10),
    ("wrong-type-seq", "workers: 1", "workers: [1, 2]", "workers", 12),
    ("wrong-type-seq-as-string", "  members:\n    - name: m1\n      address: 127.0.0.1:12379\n", "  members: m1\n",
     "cluster.members", 5),
]


def _key_alternatives(dotted):
    """The dotted key, or any suffix of it that still ends with the leaf key."""
    parts = re.findall(r"[^.\[\]]+(?:\[\d+\])?", dotted)
    return [".".join(parts[i:]) for i in range(len(parts))]


@pytest.mark.parametrize("old,new,key,line", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_check_reports_mistake(sidemux_bin, tmp_path, old, new, key, line):
    path = tmp_path / "bad.yaml"
    text = GOOD_CONFIG.replace(old, new, 1)
    assert text != GOOD_CONFIG
    path.write_text(text)
    proc = run([sidemux_bin, "--check", "-c", str(path)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}, output:\n{out}"
    assert "config ok" not in out
    keys = "|".join(re.escape(k) for k in _key_alternatives(key))
    pattern = re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): (?:{keys}): \S.*$", re.M)
    m = pattern.search(out)
    assert m, f"no line matching FILE:LINE:COL: {key}: problem in:\n{out}"
    assert int(m.group(1)) == line, f"line {m.group(1)} reported, mistake is on line {line}:\n{out}"
    assert int(m.group(2)) >= 1


def test_check_missing_file(sidemux_bin, tmp_path):
    path = tmp_path / "nope.yaml"
    proc = run([sidemux_bin, "--check", "-c", str(path)])
    assert proc.returncode != 0
    assert str(path) in proc.stdout + proc.stderr


def test_run_with_bad_config_fails_with_one_line(sidemux_bin, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD_CONFIG.replace("  connect_timeout: 2s", "  connect_timeout: soon"))
    proc = run([sidemux_bin, "-c", str(path)], timeout=15)
    assert proc.returncode != 0
    errors = _error_lines(proc)
    assert len(errors) == 1, f"want one line naming the cause, got:\n{proc.stdout}{proc.stderr}"
    assert "connect_timeout" in errors[0]
    assert not any('"listening"' in l for l in _lines(proc))


def _listening(proc):
    return [l for l in _lines(proc) if '"msg":"listening"' in l.replace(" ", "")]


def test_port_in_use(sidemux_bin, tmp_path):
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen(8)
        port = busy.getsockname()[1]
        path = tmp_path / "busy.yaml"
        path.write_text(to_yaml(base_config(listeners=[{"name": "client", "address": f"{HOST}:{port}"}])))
        proc = run([sidemux_bin, "-c", str(path)], timeout=15)
    assert proc.returncode != 0, proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, f"want one line naming the cause, got:\n{proc.stdout}{proc.stderr}"
    assert str(port) in errors[0], errors[0]
    assert re.search(r"in use|EADDRINUSE", errors[0], re.I), errors[0]
    assert not _listening(proc)


def test_second_listener_port_in_use_fails_whole_start(sidemux_bin, tmp_path):
    """Never half-configured: one free listener and one busy port still fails the start."""
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen(8)
        port = busy.getsockname()[1]
        cfg = base_config(listeners=[{"name": "client", "address": f"{HOST}:0"},
                                     {"name": "second", "address": f"{HOST}:{port}"}])
        path = tmp_path / "busy2.yaml"
        path.write_text(to_yaml(cfg))
        proc = run([sidemux_bin, "-c", str(path)], timeout=15)
    assert proc.returncode != 0, proc.stderr
    errors = _error_lines(proc)
    assert len(errors) == 1, f"want one line naming the cause, got:\n{proc.stdout}{proc.stderr}"
    assert str(port) in errors[0]


def test_unreadable_certificate_fails_start(sidemux_bin, tmp_path):
    cfg = base_config(listeners=[{"name": "client", "address": f"{HOST}:0",
                                  "tls": {"cert_file": str(tmp_path / "missing.crt"),
                                          "key_file": str(tmp_path / "missing.key")}}])
    path = tmp_path / "tls.yaml"
    path.write_text(to_yaml(cfg))
    proc = run([sidemux_bin, "-c", str(path)], timeout=15)
    assert proc.returncode != 0
    errors = _error_lines(proc)
    assert len(errors) == 1, f"want one line naming the cause, got:\n{proc.stdout}{proc.stderr}"
    assert not _listening(proc)


def test_probe_livez_ok(sidemux_bin, sidemux):
    proc = run([sidemux_bin, "probe", f"http://{HOST}:{sidemux.port}/livez"], timeout=15)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_probe_health_503_fails(sidemux_bin, sidemux):
    assert sidemux.get("/health").status == 503
    proc = run([sidemux_bin, "probe", f"http://{HOST}:{sidemux.port}/health"], timeout=15)
    assert proc.returncode != 0


def test_probe_404_fails(sidemux_bin, sidemux):
    proc = run([sidemux_bin, "probe", f"http://{HOST}:{sidemux.port}/no-such-path"], timeout=15)
    assert proc.returncode != 0


def test_probe_closed_port_fails(sidemux_bin):
    proc = run([sidemux_bin, "probe", f"http://{HOST}:{dead_port()}/livez"], timeout=15)
    assert proc.returncode != 0


def test_workers_auto_follows_the_cpu_affinity(sidemux_bin, tmp_path):
    """workers: auto counts the CPUs the process may run on, not the host's."""
    allowed = sorted(os.sched_getaffinity(0))
    cfg = base_config(workers="auto")
    sm = Sidemux("/usr/bin/taskset", tmp_path, cfg)
    sm.args = ["-c", str(allowed[0]), sidemux_bin, "-c", sm.config_path]
    try:
        sm.start()
        started = sm.wait_log(lambda e: e.get("msg") == "started", timeout=10)
        assert started is not None and started["workers"] == 1, started
        assert sm.get("/debug/vars").json()["workers"] == 1
    finally:
        assert sm.stop() == 0

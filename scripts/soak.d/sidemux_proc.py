"""One sidemux process for the soak: config from a dict, stderr (JSON log lines,
access lines included) to a file, readiness from the file's "listening" lines,
stopped by PID."""

import json
import os
import signal
import subprocess
import time

from conftest import http_request, parse_host_port, parse_metrics, to_yaml
from procs import stop_process


class SidemuxProc:
    def __init__(self, binary, workdir, name, config):
        self.binary = binary
        self.name = name
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.config = config
        self.proc = None
        self.addresses = {}  # listener name -> port
        self.write_config(config)

    def write_config(self, config):
        self.config = config
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(to_yaml(config))
        os.replace(tmp, self.config_path)  # a reload never reads a half-written file

    def start(self, timeout=15.0):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", self.config_path], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        names = {l["name"] for l in self.config["listeners"]}
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 10):
            for entry in self.log_entries():
                if entry.get("msg") == "listening" and entry.get("listener") in names:
                    self.addresses[entry["listener"]] = parse_host_port(entry["address"])[1]
            if names <= set(self.addresses):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: no 'listening' line for {names} in {timeout}s: {self.log_tail()}")

    @property
    def pid(self):
        return self.proc.pid

    def port(self, listener="client"):
        return self.addresses[listener]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_entries(self):
        """Every JSON line of the log so far (the file is re-read: use sparingly)."""
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for raw in f:
                    try:
                        value = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        out.append(value)
        except OSError:
            pass
        return out

    def log_tail(self, limit=4000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def metrics(self, timeout=5.0):
        resp = http_request(self.port(), "/metrics", timeout=timeout)
        if resp.status != 200:
            raise RuntimeError(f"{self.name} /metrics -> {resp.status}")
        return parse_metrics(resp.body.decode())

    def reload(self, config, timeout=10.0):
        """Write config, SIGHUP, and wait until the success counter moves. Returns seconds taken."""
        before = self.metrics().value("sidemux_config_reloads_total", result="success") or 0
        self.write_config(config)
        t0 = time.monotonic()
        os.kill(self.pid, signal.SIGHUP)
        for _ in range(int(timeout / 0.05) + 10):
            m = self.metrics()
            if (m.value("sidemux_config_reloads_total", result="success") or 0) > before:
                return time.monotonic() - t0
            if (m.value("sidemux_config_reloads_total", result="failure") or 0) > 0:
                raise RuntimeError(f"{self.name}: reload failed: {self.log_tail(1500)}")
            if time.monotonic() - t0 > timeout:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: reload not applied within {timeout}s")

    def wait_members_up(self, names, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(int(timeout / 0.05) + 10):
            last = self.metrics()
            if all(last.value("sidemux_member_up", member=n) == 1 for n in names):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: members {names} not up in {timeout}s: "
                           f"{last.series('sidemux_member_up') if last else None}")

    def stop(self):
        if self.proc is None:
            return None
        try:
            os.kill(self.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        return stop_process(self.proc)

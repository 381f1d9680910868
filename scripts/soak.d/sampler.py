"""RSS, open fds and CPU time of the sidemux processes, read from /proc every
SAMPLE_S seconds (and on demand at the marks the report names)."""

import os
import threading
import time

SAMPLE_S = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Sample:
    __slots__ = ("t", "rss_kib", "fds", "cpu_s")

    def __init__(self, t, rss_kib, fds, cpu_s):
        self.t = t
        self.rss_kib = rss_kib
        self.fds = fds
        self.cpu_s = cpu_s


def read_sample(pid):
    """A Sample of pid now, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return Sample(time.monotonic(), rss, fds, cpu)


class Sampler(threading.Thread):
    def __init__(self, procs, stop):
        """procs: {label: pid}."""
        super().__init__(name="sampler", daemon=True)
        self.procs = procs
        self.stop_event = stop
        self.samples = {label: [] for label in procs}
        self.marks = {label: {} for label in procs}  # label -> {mark name: Sample}
        self._lock = threading.Lock()

    def take(self, mark=None):
        with self._lock:
            for label, pid in self.procs.items():
                s = read_sample(pid)
                if s is None:
                    continue
                self.samples[label].append(s)
                if mark:
                    self.marks[label][mark] = s

    def run(self):
        while not self.stop_event.wait(SAMPLE_S):
            self.take()

    def max_rss(self, label):
        return max((s.rss_kib for s in self.samples[label]), default=0)

    def max_fds(self, label):
        return max((s.fds for s in self.samples[label]), default=0)

#!/usr/bin/python3
"""Run the sidemux image for real and check it (driven by scripts/container-test).

    checks.py --image IMAGE --workdir DIR -- PODMAN_COMMAND...

PODMAN_COMMAND is the podman invocation with its storage options
(scripts/lib/podman.sh, podman_cmd). Members are grpc_testsvc echo servers on
the host; the container runs with --network host and its config mounted from a
directory (a directory, not a file: a bind-mounted file keeps the inode it was
mounted with, so a rename-into-place or symlink swap would never show).

Prints one line per check: PASS or FAIL. Exit 1 if a check failed.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "t", "integration"))

import grpc  # noqa: E402

import grpc_testsvc  # noqa: E402

CONF = "/etc/sidemux"         # where the config directory is mounted in the container
HEALTHCHECK_PORT = 2379       # the port the image's HEALTHCHECK probes
READY_TIMEOUT = 20.0          # container start until /livez answers
RELOAD_TIMEOUT = 10.0         # SIGHUP until the reload is counted
WATCH_DEADLINE = 2.0          # SPEC/issue 11: a watched change reloads within 2 s
DRAIN_TIMEOUT_S = 10          # the config's drain_timeout
SLOW_MS = 1500                # the call in flight across `podman stop`

results = []  # (status, name, detail)


def report(status, name, detail=""):
    results.append((status, name, detail))
    print(f"{status:8} {name}" + (f" ({detail})" if detail else ""), flush=True)


def check(name, fn):
    """Run fn(); it returns a detail string (PASS) or raises (FAIL)."""
    try:
        report("PASS", name, fn() or "")
        return True
    except Exception as e:  # every failure becomes a FAIL line; the run goes on
        report("FAIL", name, f"{type(e).__name__}: {e}")
        return False


def wait_until(what, fn, timeout, interval=0.05):
    """Poll fn() until it returns a true value; bounded in time."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # not ready yet
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not within {timeout}s" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_yaml(port, members, watch):
    """watch None leaves the reload block out (an image without the key still starts)."""
    member_lines = "".join(f"    - name: {m.name}\n      address: {m.address}\n" for m in members)
    reload_block = "" if watch is None else f"reload:\n  watch: {'true' if watch else 'false'}\n"
    return (f"listeners:\n  - name: client\n    address: 127.0.0.1:{port}\n"
            f"workers: 2\n"
            f"cluster:\n  name: echo\n  members:\n{member_lines}"
            f"  health_check:\n    interval: 1s\n    timeout: 1s\n"
            f"limits:\n  drain_timeout: {DRAIN_TIMEOUT_S}s\n"
            f"{reload_block}")


def write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.status, resp.read().decode()


def reloads(port):
    """(sidemux_config_reloads_total{result="success"}, config_generation from /debug/vars)."""
    _, text = http_get(port, "/metrics")
    m = re.search(r'^sidemux_config_reloads_total\{result="success"\} (\S+)$', text, re.M)
    _, body = http_get(port, "/debug/vars")
    return (float(m.group(1)) if m else 0.0), json.loads(body)["config_generation"]


class Podman:
    def __init__(self, command, image):
        self.command = command
        self.image = image

    def __call__(self, *args, timeout=120, check=True):
        proc = subprocess.run(self.command + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc


class Container:
    """One detached sidemux container on the host network, removed by stop()/remove()."""

    def __init__(self, podman, name, conf_dir, port, config_file="sidemux.yaml"):
        self.podman = podman
        self.name = name
        self.port = port
        args = ["run", "-d", "--name", name, "--network", "host", "-v", f"{conf_dir}:{CONF}:ro"]
        if port != HEALTHCHECK_PORT:
            # The image's HEALTHCHECK probes 127.0.0.1:2379; same command, this port.
            args += ["--health-cmd", json.dumps(["/usr/local/bin/sidemux", "probe",
                                                 f"http://127.0.0.1:{port}/livez"])]
        # podman 4.3 without systemd cannot arm the periodic timer; the check
        # is run by hand (`podman healthcheck run`).
        args += ["--health-interval", "disable", podman.image, "-c", f"{CONF}/{config_file}"]
        podman(*args)

    def logs(self):
        proc = self.podman("logs", self.name, check=False)
        return (proc.stdout + proc.stderr).strip()

    def wait_ready(self):
        try:
            wait_until("/livez", lambda: http_get(self.port, "/livez")[0] == 200, READY_TIMEOUT)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; container log: {self.logs()[-1500:]}") from None

    def stop(self):
        t0 = time.monotonic()
        self.podman("stop", "--time", str(DRAIN_TIMEOUT_S + 20), self.name, timeout=DRAIN_TIMEOUT_S + 60)
        took = time.monotonic() - t0
        code = self.podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()
        return code, took

    def remove(self):
        self.podman("rm", "--force", "--time", "0", self.name, check=False)


class Client:
    def __init__(self, gen_dir, port):
        self.pb2, pb2_grpc = grpc_testsvc.generate(gen_dir)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb2_grpc.EchoStub(self.channel)

    def server(self):
        return self.stub.Unary(self.pb2.Msg(seq=1, text="container-test"), timeout=5).server

    def close(self):
        self.channel.close()


def member_stub(gen_dir, member):
    pb2, pb2_grpc = grpc_testsvc.generate(gen_dir)
    channel = grpc.insecure_channel(member.address)
    return pb2, pb2_grpc.EchoStub(channel), channel


def check_grpc_reaches(client, want):
    # Until the reloaded config reaches every worker, a call may still pick the old member.
    wait_until(f"a call answered by {want}", lambda: client.server() == want, RELOAD_TIMEOUT)
    return f"Unary through the container answered by {want}"


def check_stop_drains(ctr, gen_dir, member):
    """A call in flight when `podman stop` comes finishes; the container then exits 0."""
    pb2, stub, channel = member_stub(gen_dir, member)
    client = Client(gen_dir, ctr.port)
    try:
        call_id = f"drain-{os.getpid()}"
        future = client.stub.Slow.future(client.pb2.SlowRequest(ms=SLOW_MS, call_id=call_id), timeout=30)
        wait_until("the Slow call to reach the member", lambda: any(
            e.call_id == call_id and e.kind == "started"
            for e in stub.GetStats(pb2.StatsRequest(), timeout=5).events), 10)
        code, took = ctr.stop()
        reply = future.result(timeout=30)
        if reply.text != call_id:
            raise AssertionError(f"the call in flight got {reply.text!r}, not its own id")
        if code != "0":
            raise AssertionError(f"exit code {code}; log: {ctr.logs()[-1500:]}")
        return f"the call in flight finished OK, exit code 0, stop took {took:.1f}s"
    finally:
        client.close()
        channel.close()


def run_sighup_container(podman, workdir, gen_dir, s1, s2, port):
    conf_dir = os.path.join(workdir, "conf-sighup")
    os.makedirs(conf_dir)
    os.chmod(conf_dir, 0o755)
    write_atomically(os.path.join(conf_dir, "sidemux.yaml"), config_yaml(port, [s1], None))
    ctr = Container(podman, f"sidemux-test-hup-{os.getpid()}", conf_dir, port)
    client = None
    try:
        if not check("container starts, /livez answers 200 from the host", lambda: ctr.wait_ready() or
                     f"port {port}"):
            return
        client = Client(gen_dir, port)
        check("gRPC call from the host through the container", lambda: check_grpc_reaches(client, s1.name))

        def healthcheck():
            proc = podman("healthcheck", "run", ctr.name, check=False)
            if proc.returncode != 0:
                raise AssertionError(f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()}")
            return ("the image's HEALTHCHECK" if port == HEALTHCHECK_PORT else
                    f"the image's probe command on port {port}: 2379 is in use here")
        check("HEALTHCHECK passes (podman healthcheck run)", healthcheck)

        def sighup():
            count, gen = reloads(port)
            write_atomically(os.path.join(conf_dir, "sidemux.yaml"), config_yaml(port, [s2], None))
            podman("kill", "--signal", "HUP", ctr.name)
            wait_until("reloads_total{result=\"success\"} to grow", lambda: reloads(port)[0] == count + 1,
                       RELOAD_TIMEOUT)
            _, new_gen = reloads(port)
            if new_gen != gen + 1:
                raise AssertionError(f"generation {gen} -> {new_gen}")
            check_grpc_reaches(client, s2.name)
            return f"reloads_total{{result=\"success\"}} {count:g} -> {count + 1:g}, generation {gen} -> " \
                   f"{new_gen}, member {s1.name} replaced by {s2.name}"
        check("podman kill --signal HUP reloads", sighup)
        check("podman stop drains and exits 0", lambda: check_stop_drains(ctr, gen_dir, s2))
    finally:
        if client:
            client.close()
        ctr.remove()


def make_configmap_dir(conf_dir, text, stamp):
    """Lay out a projected volume as the kubelet does: files behind a ..data symlink."""
    data = os.path.join(conf_dir, f"..{stamp}")
    os.makedirs(data)
    os.chmod(data, 0o755)
    write_atomically(os.path.join(data, "sidemux.yaml"), text)
    return data


def swap_configmap(conf_dir, stamp, text):
    make_configmap_dir(conf_dir, text, stamp)
    tmp = os.path.join(conf_dir, "..data_tmp")
    os.symlink(f"..{stamp}", tmp)
    os.replace(tmp, os.path.join(conf_dir, "..data"))  # rename(2): atomic, as the kubelet swaps


def run_watch_container(podman, workdir, gen_dir, s1, s2, port):
    # ---- reload.watch (issue 11): a changed mounted config reloads without a signal.
    name = "reload.watch: a ConfigMap-style ..data swap reloads within 2 s, no signal"
    conf_dir = os.path.join(workdir, "conf-watch")
    os.makedirs(conf_dir)
    os.chmod(conf_dir, 0o755)
    make_configmap_dir(conf_dir, config_yaml(port, [s1], True), "2026_01")
    os.symlink("..2026_01", os.path.join(conf_dir, "..data"))
    os.symlink("..data/sidemux.yaml", os.path.join(conf_dir, "sidemux.yaml"))

    # The image is built from this tree: a sidemux that rejects the key is a regression.
    probe = podman("run", "--rm", "--network", "host", "--no-healthcheck", "-v", f"{conf_dir}:{CONF}:ro",
                   podman.image, "--check", "-c", f"{CONF}/sidemux.yaml", check=False)
    if probe.returncode != 0:
        why = (probe.stdout + probe.stderr).strip().splitlines()
        report("FAIL", name, "the image's sidemux rejects `reload: watch:`: " + (why[-1] if why else "?"))
        return

    ctr = Container(podman, f"sidemux-test-watch-{os.getpid()}", conf_dir, port)
    client = None
    try:
        if not check("reload.watch container starts", lambda: ctr.wait_ready() or ""):
            return
        client = Client(gen_dir, port)

        def watch():
            check_grpc_reaches(client, s1.name)
            count, gen = reloads(port)
            t0 = time.monotonic()
            swap_configmap(conf_dir, "2026_02", config_yaml(port, [s2], True))
            wait_until("a reload after the swap", lambda: reloads(port)[0] == count + 1, RELOAD_TIMEOUT)
            took = time.monotonic() - t0
            if took > WATCH_DEADLINE:
                raise AssertionError(f"reloaded after {took:.2f}s, past {WATCH_DEADLINE}s")
            _, new_gen = reloads(port)
            if new_gen != gen + 1:
                raise AssertionError(f"generation {gen} -> {new_gen}")
            check_grpc_reaches(client, s2.name)
            return f"reloaded after {took:.2f}s, generation {gen} -> {new_gen}, now {s2.name}"
        check(name, watch)
        check("reload.watch container: podman stop drains and exits 0",
              lambda: check_stop_drains(ctr, gen_dir, s2))
    finally:
        if client:
            client.close()
        ctr.remove()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("podman", nargs="+")
    args = ap.parse_args()
    podman = Podman(args.podman, args.image)

    gen_dir = os.path.join(args.workdir, "gen")
    members = [grpc_testsvc.EchoServer(n, gen_dir) for n in ("s1", "s2")]
    threads = [threading.Thread(target=m.start) for m in members]
    grpc_testsvc.generate(gen_dir)  # once, before the servers import it concurrently
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        missing = [m.name for m in members if not m.running() or m.port is None]
        if missing:
            report("FAIL", "echo members start on the host", ", ".join(missing))
            return 1
        s1, s2 = members
        port = HEALTHCHECK_PORT if port_free(HEALTHCHECK_PORT) else free_port()
        run_sighup_container(podman, args.workdir, gen_dir, s1, s2, port)
        run_watch_container(podman, args.workdir, gen_dir, s1, s2, port)
    finally:
        for m in members:
            m.stop()
    return 1 if any(status == "FAIL" for status, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())

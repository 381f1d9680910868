"""conf/examples: every YAML document parses, the pieces that must agree do
(probe ports and the sidemux listener, grace periods and drain_timeout,
members and the etcd pods, scrape targets), and sidemux accepts each embedded
config with --check."""

import os
import pathlib
import re

import pytest
import yaml

from conftest import run

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "conf" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def documents(name):
    with open(EXAMPLES / name) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def seconds(text):
    """sidemux durations (250ms, 30s) and compose ones (1m30s)."""
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def drain_timeout(config):
    return seconds(config.get("limits", {}).get("drain_timeout", "30s"))


def listener_port(config):
    (listener,) = config["listeners"]
    return int(listener["address"].rsplit(":", 1)[1])


def member_hosts_ports(config):
    return [tuple(m["address"].rsplit(":", 1)) for m in config["cluster"]["members"]]


def assert_check_ok(sidemux_bin, tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    proc = run([sidemux_bin, "--check", "-c", str(path)])
    assert proc.returncode == 0 and proc.stdout.strip() == "config ok", proc.stdout + proc.stderr


def test_examples_exist():
    names = {p.name for p in EXAMPLE_FILES}
    assert {"kubernetes.yaml", "compose.yaml", "compose-sidemux.yaml", "prometheus.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_document_is_a_mapping(path):
    with open(path) as f:
        docs = list(yaml.safe_load_all(f))
    assert docs and all(isinstance(d, dict) and d for d in docs), path


# --------------------------------------------------------------------------
# Kubernetes


def kube_objects():
    objects = {}
    for doc in documents("kubernetes.yaml"):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objects, f"{key} defined twice"
        objects[key] = doc
    return objects


def of_kind(objects, kind):
    found = [o for (k, _), o in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(pod_spec, name):
    (found,) = [c for c in pod_spec["containers"] if c["name"] == name]
    return found


def container_port(c, port):
    """A probe's or a Service's port: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in c.get("ports", []) if p["name"] == port]
    return found


def config_arg(args):
    """The FILE of `-c FILE` in a container's arguments."""
    return args[args.index("-c") + 1]


def flag(args, name):
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


@pytest.fixture
def kube():
    objects = kube_objects()
    statefulset = of_kind(objects, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    sidemux = container(pod, "sidemux")
    directory, file = os.path.split(config_arg(sidemux["args"]))
    (mount,) = [m for m in sidemux["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_text = objects[("ConfigMap", volume["configMap"]["name"])]["data"][file]
    return {"objects": objects, "statefulset": statefulset, "pod": pod, "sidemux": sidemux,
            "mount": mount, "config_text": config_text, "config": yaml.safe_load(config_text)}


def test_kube_configmap_passes_check(sidemux_bin, tmp_path, kube):
    assert_check_ok(sidemux_bin, tmp_path, kube["config_text"], "kubernetes-sidemux.yaml")


def test_kube_config_is_etcd_with_watch(kube):
    assert kube["config"]["cluster"]["kind"] == "etcd"
    assert kube["config"]["reload"]["watch"] is True
    # A subPath mount is never updated when the ConfigMap changes.
    assert "subPath" not in kube["mount"], "reload.watch needs a directory mount"


def test_kube_probes_hit_the_sidemux_listener(kube):
    sidemux, port = kube["sidemux"], listener_port(kube["config"])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = sidemux[probe]["httpGet"]
        assert get["path"] == path, probe
        assert container_port(sidemux, get["port"]) == port, probe


def test_kube_grace_period_covers_prestop_and_drain(kube):
    pre_stop = kube["sidemux"]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0].endswith("sleep"), pre_stop
    grace = kube["pod"]["terminationGracePeriodSeconds"]
    assert grace >= drain_timeout(kube["config"]), "SIGKILL before drain_timeout ends"
    assert grace > int(pre_stop[1]) + drain_timeout(kube["config"]), \
        "the preStop sleep comes out of the same grace period"


def test_kube_sidemux_has_resource_requests(kube):
    requests = kube["sidemux"]["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)


def test_kube_members_are_the_statefulset_pods(kube):
    statefulset, pod = kube["statefulset"], kube["pod"]
    replicas, service = statefulset["spec"]["replicas"], statefulset["spec"]["serviceName"]
    assert replicas == 3
    etcd_client_url = flag(container(pod, "etcd")["command"], "listen-client-urls")
    etcd_port = etcd_client_url.rsplit(":", 1)[1]
    expected = [(f"{statefulset['metadata']['name']}-{i}.{service}", etcd_port) for i in range(replicas)]
    assert member_hosts_ports(kube["config"]) == expected
    assert etcd_port != str(listener_port(kube["config"])), "etcd and sidemux share a pod: one port each"


def test_kube_services_select_the_pods_and_reach_sidemux(kube):
    labels = kube["statefulset"]["spec"]["template"]["metadata"]["labels"]
    services = [o for (k, _), o in kube["objects"].items() if k == "Service"]
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [kube["statefulset"]["spec"]["serviceName"]]
    # etcd-N.etcd must resolve before any pod is ready (see the manifest).
    assert headless[0]["spec"]["publishNotReadyAddresses"] is True
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
        client = next(p for p in service["spec"]["ports"] if p["name"] == "client")
        assert container_port(kube["sidemux"], client["targetPort"]) == listener_port(kube["config"])


# --------------------------------------------------------------------------
# Compose


@pytest.fixture
def compose():
    (doc,) = documents("compose.yaml")
    sidemux = doc["services"]["sidemux"]
    mounts = dict(v.split(":")[:2][::-1] for v in sidemux["volumes"])  # target -> source
    config_text = (EXAMPLES / mounts[config_arg(sidemux["command"])]).read_text()
    return {"doc": doc, "sidemux": sidemux, "config_text": config_text,
            "config": yaml.safe_load(config_text)}


def test_compose_config_passes_check(sidemux_bin, tmp_path, compose):
    assert_check_ok(sidemux_bin, tmp_path, compose["config_text"], "compose-sidemux.yaml")


def test_compose_members_are_the_etcd_services(compose):
    services = compose["doc"]["services"]
    members = member_hosts_ports(compose["config"])
    assert len(members) == 3
    for host, port in members:
        env = services[host]["environment"]
        assert env["ETCD_NAME"] == host
        assert env["ETCD_LISTEN_CLIENT_URLS"].rsplit(":", 1)[1] == port


def test_compose_publishes_the_listener_and_waits_for_the_drain(compose):
    sidemux = compose["sidemux"]
    (published,) = sidemux["ports"]
    assert published.startswith("127.0.0.1:")
    assert int(published.rsplit(":", 1)[1]) == listener_port(compose["config"])
    assert seconds(sidemux["stop_grace_period"]) > drain_timeout(compose["config"])


# --------------------------------------------------------------------------
# Prometheus


def scraper_allowed(config):
    """Prometheus scrapes from another address than loopback: admin.allow must say so."""
    return any(not c.startswith(("127.", "::1")) for c in config["admin"]["allow"])


def scrape_jobs():
    (doc,) = documents("prometheus.yaml")
    return {job["job_name"]: job for job in doc["scrape_configs"]}


def test_prometheus_kube_job_keeps_the_sidemux_port(kube):
    (job,) = [j for j in scrape_jobs().values() if "kubernetes_sd_configs" in j]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    keep = next(r for r in job["relabel_configs"] if r["action"] == "keep")
    label = kube["statefulset"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    port_name = next(p["name"] for p in kube["sidemux"]["ports"]
                     if p["containerPort"] == listener_port(kube["config"]))
    assert keep["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                                     "__meta_kubernetes_pod_container_name",
                                     "__meta_kubernetes_pod_container_port_name"]
    assert re.fullmatch(keep["regex"], f"{label};sidemux;{port_name}")
    assert scraper_allowed(kube["config"])


def test_prometheus_compose_job_targets_the_sidemux_service(compose):
    (job,) = [j for j in scrape_jobs().values() if "static_configs" in j]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.rsplit(":", 1)
    assert host in compose["doc"]["services"] and host == "sidemux"
    assert int(port) == listener_port(compose["config"])
    assert scraper_allowed(compose["config"])

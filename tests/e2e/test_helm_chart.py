"""The Helm chart (`helm/duro`): lint, render, Kubernetes schemas, values schema, and the rendered cluster actually running.

Helm is built from the Go module proxy by `scripts/setup.d/60-helm.sh`; the
tests skip, naming the step, where it is missing. The last tests take the
StatefulSet's rendered command and environment and start them as `duro`
processes on this machine, one per pod, against a real Kafka broker, changing
only what a pod gets from Kubernetes and one machine cannot give each of them:
its own address, ports, volume and host name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from duro.cli import _overrides, _parser
from duro.settings import DuroSettings, load_settings
from tests.processes import REPO_ROOT, ManagedProcess, ServiceEndpoint, free_port, http, wait_until

HELM = Path.home() / ".cache" / "duro-tools" / "helm-v3.22.0" / "helm"
CHART = REPO_ROOT / "helm" / "duro"
VALUES = {"single": CHART / "ci" / "single-values.yaml", "cluster": CHART / "ci" / "cluster-values.yaml"}
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "duro-test"
CRD_KINDS = {"ServiceMonitor"}  # not in the core schemas; checked field by field below

pytestmark = pytest.mark.skipif(not HELM.exists(), reason=f"helm is not built at {HELM}; scripts/setup.d/60-helm.sh builds it")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)


def render(mode: str, *settings: str) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", NAMESPACE, "-f", str(VALUES[mode])]
    for setting in settings:
        args += ["--set", setting]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (duro,) = one(documents, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return duro


@pytest.mark.parametrize("mode", sorted(VALUES))
def test_helm_lint_strict_passes(mode: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(VALUES[mode]))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mode", sorted(VALUES))
def test_every_rendered_object_matches_the_kubernetes_schemas(mode: str) -> None:
    documents = render(mode)
    for document in documents:
        if document["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises naming the field
    assert {d["kind"] for d in documents} >= {"StatefulSet", "Service", "ConfigMap"}


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("replicas=three", "/replicas"),
        ("mode=triple", "/mode"),
        ("partitions=0", "/partitions"),
        ("workers=0", "/workers"),
        ("kafka.bootstrap=no-port", "/kafka/bootstrap"),
        ("logFormat=xml", "/logFormat"),
        ("shutdown.timeoutMs=soon", "/shutdown/timeoutMs"),
        ("env.NOT_DURO=1", "NOT_DURO"),
        ("replica=3", "replica"),
        ("snapshots.repository=bucket/prefix", "/snapshots/repository"),
        ("snapshots.s3.addressingStyle=dns", "/snapshots/s3/addressingStyle"),
    ],
)
def test_a_wrong_value_fails_at_install_time_naming_it(setting: str, named: str) -> None:
    result = helm("template", "rel", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr


def test_cluster_mode_without_kafka_bootstrap_is_refused() -> None:
    result = helm("template", "rel", str(CHART), "--set", "mode=cluster")
    assert result.returncode != 0 and "/kafka/bootstrap" in result.stderr, result.stderr


def test_cluster_mode_is_a_parallel_statefulset_with_a_volume_per_pod_services_pdb_and_service_monitor() -> None:
    documents = render("cluster")
    statefulset = one(documents, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    assert [claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]] == ["data"]
    headless = one(documents, "Service", "rel-duro-headless")
    assert spec["serviceName"] == "rel-duro-headless"
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert [p["name"] for p in one(documents, "Service", "rel-duro-ingress")["spec"]["ports"]] == ["ingress"]
    admin = one(documents, "Service", "rel-duro-admin")
    assert [p["name"] for p in admin["spec"]["ports"]] == ["admin"]
    pdb = one(documents, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    monitor = one(documents, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= admin["metadata"]["labels"].items(), "it selects the admin Service"
    assert monitor["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s"}]


def test_single_mode_is_one_node_on_the_embedded_log_without_a_pdb() -> None:
    documents = render("single", "replicas=5")
    assert one(documents, "StatefulSet")["spec"]["replicas"] == 1
    assert not [d for d in documents if d["kind"] in ("PodDisruptionBudget", "ServiceMonitor")]
    assert env_of(container(documents), "rel-duro-0")["DURO_LOG"] == "embedded"


@pytest.mark.parametrize("mode", sorted(VALUES))
def test_the_pod_runs_as_non_root_with_resources_and_a_grace_period_covering_the_drain(mode: str) -> None:
    documents = render(mode)
    pod = one(documents, "StatefulSet")["spec"]["template"]["spec"]
    duro = container(documents)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert duro["securityContext"]["allowPrivilegeEscalation"] is False
    assert duro["securityContext"]["readOnlyRootFilesystem"] is True
    assert duro["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert duro["resources"]["requests"] and duro["resources"]["limits"]["memory"]
    settings = pod_settings(documents, "rel-duro-0")
    way_out_ms = settings.shutdown.timeout_ms + settings.shutdown.close_timeout_ms
    assert pod["terminationGracePeriodSeconds"] * 1000 > way_out_ms, "Kubernetes waits for the drain and the close"
    assert (settings.shutdown.timeout_ms, settings.shutdown.close_timeout_ms) == (20_000, 10_000)


@pytest.mark.parametrize("mode", sorted(VALUES))
def test_rendered_command_env_ports_and_probes_are_ones_duro_accepts(mode: str) -> None:
    documents = render(mode)
    duro = container(documents)
    assert 'ENTRYPOINT ["duro"]' in (REPO_ROOT / "Dockerfile").read_text(), "the container's args follow the image's duro entrypoint"
    for name in env_of(duro, "rel-duro-0"):
        if name.startswith("DURO_"):
            assert_known_setting(name)
    for ordinal in range(one(documents, "StatefulSet")["spec"]["replicas"]):
        settings = pod_settings(documents, f"rel-duro-{ordinal}")
        assert settings.node_id == ordinal + 1
        assert settings.bind == "0.0.0.0"
        assert settings.advertised_host == f"rel-duro-{ordinal}.rel-duro-headless.{NAMESPACE}.svc"
        assert settings.log_format == "json"
        ports = {p["name"]: p["containerPort"] for p in duro["ports"]}
        assert ports == {"ingress": settings.ingress_port, "admin": settings.admin_port}
        assert settings.ingress.advertised_ingress_url == f"http://rel-duro-ingress.{NAMESPACE}.svc:{settings.ingress_port}/"
        mounts = {m["name"]: m["mountPath"] for m in duro["volumeMounts"]}
        assert mounts["data"] == str(settings.data_dir)
    assert duro["readinessProbe"]["httpGet"] == {"path": "/restate/health", "port": "ingress"}
    assert duro["livenessProbe"]["httpGet"] == {"path": "/health", "port": "admin"}
    settings = pod_settings(documents, "rel-duro-0")
    if mode == "cluster":
        assert (settings.log, settings.kafka_bootstrap, settings.partitions) == ("kafka", "kafka-0.kafka:9092,kafka-1.kafka:9092", 12)
        assert settings.workers is None, "a node on Kafka runs one worker"
        assert settings.max_waiting_requests == 50_000, "from the config file"
        assert settings.retry.max_attempts == 20, "from extraEnv"
        assert settings.snapshots.repository == "s3://duro-snapshots/cluster"
        assert (settings.snapshots.s3_endpoint_url, settings.snapshots.s3_region) == ("http://minio.storage:9000", "eu-west-1")
        assert duro["envFrom"] == [{"secretRef": {"name": "duro-snapshots-s3"}}], "S3 credentials come from the Secret"
    else:
        assert settings.log == "embedded"
        assert settings.workers == 1, "one worker unless the values say more: the host's core count is not the pod's"
        assert settings.ingress.max_body_bytes == 1_048_576, "from the config file"
        assert settings.invoker.inactivity_timeout_ms == 30_000, "from env"
        assert settings.snapshots.repository is None, "each pod's own volume"
        assert "envFrom" not in duro


# ---------------------------------------------------------------- the rendered cluster, run


def test_the_rendered_cluster_forms_a_working_cluster_on_kafka(
    tmp_path: Path, kafka_bootstrap: str, official_python_service: ServiceEndpoint
) -> None:
    topic = f"duro-helm-{uuid.uuid4().hex[:8]}"
    documents = render(
        "cluster",
        f"kafka.bootstrap={kafka_bootstrap}",
        f"kafka.topic={topic}",
        f"kafka.metadataTopic={topic}.meta",
        "partitions=6",
        f"snapshots.repository={tmp_path / 'shared-snapshots'}",  # a directory every pod reads: one machine's shared store
    )
    with running_pods(documents, tmp_path, 3) as pods:
        wait_until(lambda: all(pod.owned() for pod in pods) and sum(len(pod.owned()) for pod in pods) == 6, 90, "partitions on all 3 pods")
        assert [pod.node_id() for pod in pods] == [1, 2, 3]
        first = pods[0]
        status, _, body = http("POST", f"{first.url('admin')}/deployments", {"uri": official_python_service.uri})
        assert status in (200, 201), body
        wait_until(lambda: all(http("GET", f"{p.url('admin')}/services/Counter")[0] == 200 for p in pods), 30, "the registry on every pod")
        for i in range(9):
            status, _, body = http("POST", f"{pods[i % 3].url('ingress')}/Counter/helm/add", 1, timeout_s=60)
            assert status == 200, body
        for pod in pods:
            status, _, body = http("POST", f"{pod.url('ingress')}/Counter/helm/get", timeout_s=60)
            assert (status, json.loads(body)) == (200, 9)
        status, _, body = http("GET", f"{first.url('admin')}/metrics")
        assert status == 200 and b"duro_partition_is_leader" in body


def test_the_rendered_single_node_serves(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    with running_pods(render("single"), tmp_path, 1) as (pod,):
        status, _, body = http("POST", f"{pod.url('admin')}/deployments", {"uri": official_python_service.uri})
        assert status in (200, 201), body
        status, _, body = http("POST", f"{pod.url('ingress')}/Greeter/greet", "Ada")
        assert status == 200, body


class Pod:
    """One StatefulSet pod's duro, run as a local process with the rendered command and environment."""

    def __init__(self, name: str, container_spec: dict[str, Any], env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.spec = container_spec
        self.ports = {"ingress": free_port(), "admin": free_port()}
        local = {  # what Kubernetes gives each pod (address, ports, volume, host name) that one machine cannot
            "HOSTNAME": name,
            "DURO_BIND": "127.0.0.1",
            "DURO_ADVERTISED_HOST": "127.0.0.1",
            "DURO_INGRESS_PORT": str(self.ports["ingress"]),
            "DURO_ADMIN_PORT": str(self.ports["admin"]),
            "DURO_DATA_DIR": str(tmp / name),
        }
        if "DURO_CONFIG" in env:
            config = tmp / f"{name}.toml"
            config.write_text(CONFIG_FILES[env["DURO_CONFIG"]])
            local["DURO_CONFIG"] = str(config)
        self.process = ManagedProcess(name, [sys.executable, "-m", "duro", *container_spec["args"]], tmp / f"{name}.log", {**env, **local})

    def url(self, port_name: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}"

    def probe(self, kind: str) -> bool:
        get = self.spec[kind]["httpGet"]
        return http("GET", self.url(get["port"]) + get["path"], timeout_s=2)[0] == 200

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.process.log_path.read_text().splitlines() if line.startswith("{")]

    def owned(self) -> set[int]:
        runs = [line["message"] for line in self.log_lines() if " runs partitions " in line["message"]]
        return set(json.loads(runs[-1].split(" runs partitions ", 1)[1])) if runs else set()

    def node_id(self) -> int:
        return int(self.log_lines()[-1]["node"])


CONFIG_FILES: dict[str, str] = {}


class running_pods:
    def __init__(self, documents: list[dict[str, Any]], tmp: Path, expected: int) -> None:
        statefulset = one(documents, "StatefulSet")
        assert statefulset["spec"]["replicas"] == expected
        configs = [d for d in documents if d["kind"] == "ConfigMap"]
        for config in configs:
            CONFIG_FILES["/etc/duro/duro.toml"] = config["data"]["duro.toml"]
        spec = container(documents)
        self.pods = [Pod(f"rel-duro-{i}", spec, env_of(spec, f"rel-duro-{i}"), tmp) for i in range(expected)]

    def __enter__(self) -> list[Pod]:
        for pod in self.pods:  # podManagementPolicy: Parallel
            pod.process.start()
        for pod in self.pods:
            wait_until(lambda pod=pod: _alive(pod) and pod.probe("startupProbe"), 90, f"{pod.name}'s startup probe")
            wait_until(lambda pod=pod: _alive(pod) and pod.probe("readinessProbe") and pod.probe("livenessProbe"), 90, f"{pod.name} ready")
        return self.pods

    def __exit__(self, *exc: object) -> None:
        for pod in self.pods:
            exit_code = pod.process.stop(timeout_s=30)
            assert exc[0] is not None or exit_code == 0, f"{pod.name} exited {exit_code}:\n{pod.process.log_tail()}"


def _alive(pod: Pod) -> bool:
    if not pod.process.alive():
        raise RuntimeError(f"{pod.name} exited:\n{pod.process.log_tail()}")
    return True


# ---------------------------------------------------------------- reading the rendered pod


def env_of(container_spec: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's environment as Kubernetes resolves it for `pod_name` (field refs and $(VAR) references)."""
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for entry in container_spec["env"]:
        if "valueFrom" in entry:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], str(entry["value"]))
    return env


def pod_settings(documents: list[dict[str, Any]], pod_name: str) -> DuroSettings:
    """The settings duro builds from the pod's args, environment and config file (argparse exits on an unknown flag)."""
    spec = container(documents)
    env = env_of(spec, pod_name)
    configs = [d for d in documents if d["kind"] == "ConfigMap"]
    args = _parser().parse_args(spec["args"])
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("DURO_"):
                patch.delenv(name)
        for name, value in {**env, "HOSTNAME": pod_name}.items():
            patch.setenv(name, value)
        config_file = None
        if "DURO_CONFIG" in env:
            (config_map,) = configs
            mount = next(m for m in spec["volumeMounts"] if m["name"] == "config")
            assert env["DURO_CONFIG"] == mount["mountPath"] + "/duro.toml"
            with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as file:
                file.write(config_map["data"]["duro.toml"])
            config_file = Path(file.name)
            patch.delenv("DURO_CONFIG")
        try:
            return load_settings(config_file, _overrides(args))
        finally:
            if config_file is not None:
                config_file.unlink()


def assert_known_setting(variable: str) -> None:
    """pydantic-settings ignores DURO_ variables that name no setting; here such a name fails, naming it."""
    model: type[BaseModel] = DuroSettings
    parts = variable.removeprefix("DURO_").lower().split("__")
    for i, part in enumerate(parts):
        assert part in model.model_fields or part == "config", f"{variable} names no duro setting"
        if part == "config":
            return
        annotation = model.model_fields[part].annotation
        if i < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), f"{variable}: {part} has no nested settings"
            model = annotation

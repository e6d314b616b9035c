"""docker-compose.yml is checked against duro itself (Docker cannot run here): commands, ports and variables must be ones duro accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from duro.cli import _overrides, _parser
from duro.settings import DuroSettings
from tests.processes import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
DURO_NODES = {name: service for name, service in COMPOSE["services"].items() if name.startswith("duro-")}


def _settings(service: dict, monkeypatch: pytest.MonkeyPatch) -> DuroSettings:
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    args = _parser().parse_args(service["command"])  # argparse exits on an unknown flag
    return DuroSettings(**_overrides(args))


def test_three_duro_nodes_on_one_kafka_broker_and_an_example_deployment() -> None:
    assert len(DURO_NODES) == 3
    assert "kafka" in COMPOSE["services"] and "examples" in COMPOSE["services"]
    kafka_env = COMPOSE["services"]["kafka"]["environment"]
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"] and "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "KRaft mode"


@pytest.mark.parametrize("name", sorted(DURO_NODES))
def test_each_node_s_command_and_environment_are_valid_duro_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = DURO_NODES[name]
    settings = _settings(service, monkeypatch)
    assert settings.log == "kafka"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.advertised_host == name, "other nodes reach it by its service name"
    assert settings.bind == "0.0.0.0"
    published = {int(mapping.split(":")[-1]): mapping for mapping in service["ports"]}
    assert set(published) == {settings.ingress_port, settings.admin_port}, "the published container ports are the ones duro listens on"
    assert published[settings.admin_port].startswith("127.0.0.1:"), "the admin API is published on the host's loopback only"
    assert any(volume.endswith(":" + str(settings.data_dir)) for volume in service["volumes"]), "the data dir is a volume"


def test_node_ids_are_unique_and_partition_counts_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = [_settings(service, monkeypatch) for service in DURO_NODES.values()]
    assert len({s.node_id for s in settings}) == 3
    assert len({s.partitions for s in settings}) == 1
    assert len({s.kafka_topic for s in settings}) == 1


def test_the_example_service_serves_the_port_the_comments_register() -> None:
    examples = COMPOSE["services"]["examples"]
    port = examples["entrypoint"][examples["entrypoint"].index("--port") + 1]
    assert examples["expose"] == [port]
    assert f"http://examples:{port}" in (REPO_ROOT / "docker-compose.yml").read_text()
    assert (REPO_ROOT / "examples" / "app.py").exists()


def test_the_dockerfile_copies_every_package() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for package in ("wal", "protocol", "partition_worker", "ingress", "sdk", "duro", "examples"):
        assert f"COPY {package} {package}" in dockerfile
    assert Path(REPO_ROOT / "pyproject.toml").exists()


def test_the_image_is_multi_stage_non_root_with_a_health_check_on_a_path_duro_serves() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", dockerfile, re.M)
    assert len(stages) == 2 and stages[0][1] == "build" and "COPY --from=build" in dockerfile
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "the final stage runs as an unprivileged user"
    uid = user[-1].split(":")[0]
    chart_values = yaml.safe_load((REPO_ROOT / "helm" / "duro" / "values.yaml").read_text())
    assert int(uid) == chart_values["podSecurityContext"]["runAsUser"], "the Helm chart runs the image's user"
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert "/health" in healthcheck and "DURO_ADMIN_PORT" in healthcheck and "'9070'" in healthcheck
    assert DuroSettings().admin_port == 9070, "the health check's default port is duro's admin port"
    assert 'ENTRYPOINT ["duro"]' in dockerfile and 'CMD ["serve"]' in dockerfile


def test_compose_runs_the_kafka_version_the_tests_verify() -> None:
    kafka_script = (REPO_ROOT / "scripts" / "kafka").read_text()
    verified = re.search(r'KAFKA_VERSION="\$\{DURO_KAFKA_VERSION:-([0-9.]+)\}"', kafka_script)
    assert verified is not None
    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{verified.group(1)}"


def test_compose_gives_each_node_time_to_drain() -> None:
    for service in DURO_NODES.values():
        grace_s = int(service["stop_grace_period"].removesuffix("s"))
        shutdown = DuroSettings().shutdown
        assert grace_s * 1000 > shutdown.timeout_ms + shutdown.close_timeout_ms

"""The Dockerfile builds, and the image runs `duro serve --help`, as its unprivileged user, with a health check that passes.

Docker's engine cannot run here and crun cannot start containers in this
sandbox (cgroups in hybrid mode), so buildah builds and runs the image with
chroot isolation. python:3.11-slim's registry is not reachable either: the base
is a stand-in with the same Python made from Debian's packages
(`scripts/setup.d/70-image-base.sh`), passed as the Dockerfile's PYTHON_IMAGE.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.processes import REPO_ROOT, free_port

BASE_IMAGE = "localhost/duro-python-base:3.11"
BUILD_TIMEOUT_S = 900


def buildah(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed; scripts/setup.d/70-image-base.sh installs it")
    if buildah("inspect", "--type", "image", BASE_IMAGE).returncode != 0:
        pytest.skip(f"the base image {BASE_IMAGE} is missing; scripts/setup.d/70-image-base.sh makes it")
    tag = f"localhost/duro-test:{uuid.uuid4().hex[:8]}"
    build = buildah(
        "bud", "--isolation", "chroot", "--pull-never", "--format", "docker", "--layers=false",
        "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", tag, str(REPO_ROOT),
        timeout_s=BUILD_TIMEOUT_S,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    try:
        yield tag
    finally:
        buildah("rmi", "--force", tag)


@pytest.fixture
def container(image: str) -> Iterator[str]:
    created = buildah("from", "--pull-never", image)
    assert created.returncode == 0, created.stderr
    name = created.stdout.strip()
    try:
        yield name
    finally:
        buildah("rm", name)


def run(container_name: str, *command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return buildah("run", "--isolation", "chroot", container_name, "--", *command, timeout_s=timeout_s)


def config_of(image: str) -> dict:
    inspected = buildah("inspect", "--type", "image", image)
    assert inspected.returncode == 0, inspected.stderr
    return json.loads(inspected.stdout)["Docker"]["config"]


def test_the_image_runs_duro_serve_help_as_its_unprivileged_user(image: str, container: str) -> None:
    config = config_of(image)
    assert config["Entrypoint"] == ["duro"] and config["Cmd"] == ["serve"]
    assert config["User"] == "10001:10001"
    help_text = run(container, "duro", "serve", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "usage: duro serve" in help_text.stdout and "--log-format" in help_text.stdout
    assert run(container, "id", "-u").stdout.strip() == "10001"
    assert run(container, "sh", "-c", "touch /var/lib/duro/probe && echo ok").stdout.strip() == "ok", "the data dir is the user's"


def test_the_image_s_health_check_passes_while_duro_serves(image: str, container: str) -> None:
    healthcheck = config_of(image)["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD"
    ingress, admin = free_port(), free_port()
    check = " ".join(_quote(part) for part in healthcheck[1:])
    script = (
        f"DURO_ADMIN_PORT={admin} DURO_INGRESS_PORT={ingress} DURO_BIND=127.0.0.1 duro serve --partitions 2 & "
        f"for i in $(seq 1 150); do if DURO_ADMIN_PORT={admin} {check} 2>/dev/null; then echo healthy; kill $!; wait $!; exit 0; fi; sleep 0.2; done; "
        "kill $!; exit 1"
    )
    outcome = run(container, "sh", "-c", script, timeout_s=120)
    assert "healthy" in outcome.stdout, outcome.stdout[-2000:] + outcome.stderr[-2000:]


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"

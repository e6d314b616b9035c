"""Bearer tokens on the admin API and the ingress of a real `duro serve`, and the `restate` CLI's token against the admin API."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.test_restate_cli import CLI
from tests.e2e.test_kafka_cluster import Cluster
from tests.processes import DuroServer, ServiceEndpoint, wait_until
from tests.processes import http as request

ADMIN_TOKEN = "admin-3f9c2e-token"
INGRESS_TOKEN = "ingress-7a1d44-token"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuroServer, ServiceEndpoint, Path]]:
    tmp = tmp_path_factory.mktemp("auth")
    endpoint = ServiceEndpoint("tests.services.official_python:app", tmp / "service.log")
    env = {"DURO_INGRESS__ADMIN_TOKEN": ADMIN_TOKEN, "DURO_INGRESS__INGRESS_TOKEN": INGRESS_TOKEN}
    server = DuroServer(tmp / "data", tmp / "duro.log", env=env)
    endpoint.start()
    try:
        endpoint.wait_ready()
        with server.serving():  # the probes' paths need no token: wait_ready polls them
            yield server, endpoint, tmp
    finally:
        endpoint.stop()


def test_the_admin_api_needs_its_token_but_for_the_liveness_probe(node: tuple[DuroServer, ServiceEndpoint, Path]) -> None:
    server, endpoint, _ = node
    assert request("GET", f"{server.admin}/health")[0] == 200
    for headers in ({}, bearer("wrong"), bearer(INGRESS_TOKEN), {"authorization": ADMIN_TOKEN}):
        status, answered_headers, body = request("POST", f"{server.admin}/deployments", {"uri": endpoint.uri}, headers)
        assert status == 401, (headers, body)
        assert answered_headers["www-authenticate"].startswith("Bearer")
        assert "requires 'Authorization: Bearer <token>'" in json.loads(body)["message"]
    assert json.loads(request("GET", f"{server.admin}/deployments", headers=bearer(ADMIN_TOKEN))[2]) == {"deployments": []}
    status, _, body = request("POST", f"{server.admin}/deployments", {"uri": endpoint.uri}, bearer(ADMIN_TOKEN))
    assert status == 201, body


def test_the_ingress_needs_its_token_but_for_the_readiness_probe(node: tuple[DuroServer, ServiceEndpoint, Path]) -> None:
    server, endpoint, _ = node
    request("POST", f"{server.admin}/deployments", {"uri": endpoint.uri}, bearer(ADMIN_TOKEN))
    assert request("GET", f"{server.ingress}/restate/health")[0] == 200
    for headers in ({}, bearer(ADMIN_TOKEN)):
        status, _, body = server.call("/Greeter/greet", "no", headers)
        assert status == 401, body
    status, _, body = server.call("/Greeter/greet", "Ada", bearer(INGRESS_TOKEN))
    assert (status, json.loads(body)) == (200, "Hello Ada!")


@pytest.mark.skipif(not CLI.exists(), reason=f"the restate CLI is not installed at {CLI} (scripts/setup installs it)")
def test_the_restate_cli_sends_its_token_to_the_admin_api(node: tuple[DuroServer, ServiceEndpoint, Path]) -> None:
    server, endpoint, tmp = node

    def restate(*args: str, token: str | None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RESTATE_ADMIN_URL": server.admin, "RESTATE_CLI_CONFIG_HOME": str(tmp / "cli"), "NO_COLOR": "1"}
        if token is not None:
            env["RESTATE_AUTH_TOKEN"] = token
        return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)

    refused = restate("deployments", "list", token=None)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    registered = restate("deployments", "register", endpoint.uri, "--yes", token=ADMIN_TOKEN)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    listed = restate("deployments", "list", token=ADMIN_TOKEN)
    assert listed.returncode == 0 and endpoint.uri in listed.stdout, listed.stdout + listed.stderr


def test_nodes_of_a_cluster_send_each_other_the_admin_token(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Replies travel between nodes over the admin API's /internal/replies: with a token, they still arrive."""
    cluster = Cluster(tmp_path, kafka_bootstrap)
    cluster.service.start()
    try:
        cluster.service.wait_ready()
        calls_cross_nodes_with_the_token(cluster)
    finally:
        cluster.stop_all()


def calls_cross_nodes_with_the_token(cluster: Cluster) -> None:
    token_env = {"DURO_INGRESS__ADMIN_TOKEN": ADMIN_TOKEN}
    first = cluster.start_node(1, extra_env=token_env)
    second = cluster.start_node(2, extra_env=token_env)
    cluster.wait_balanced([first, second])
    status, _, body = request("POST", f"{first.admin}/deployments", {"uri": cluster.service.uri}, bearer(ADMIN_TOKEN))
    assert status == 201, body
    wait_until(lambda: second.call("/Greeter/greet", "x", timeout_s=10)[0] == 200, 30, "the second node to know the deployment")
    for index in range(12):  # keys spread over both nodes' partitions: about half the replies cross to the other node
        status, _, body = second.call(f"/Counter/auth-{index}/add", 1, timeout_s=20)
        assert (status, json.loads(body)) == (200, 1), body

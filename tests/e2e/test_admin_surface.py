"""The admin API as a probe into the node's network, closed off with a real `duro serve`.

A loopback service stands for something the admin API should not read out: it
answers every request with a secret. A registration aimed at it must not echo
the secret; with `forbid_private_deployment_targets` or an allowlist it must
not even be contacted. URIs and headers with control characters are refused,
and the data dir keeps what it holds (clients' headers, deployment tokens) to
duro's user.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint
from tests.processes import http as request

SECRET = "SECRET-TOKEN-8d1f3c"


class SecretKeeper(BaseHTTPRequestHandler):
    """Answers every request with the secret, as an internal service might (status chosen per path)."""

    requests_seen = 0

    def do_GET(self) -> None:
        type(self).requests_seen += 1
        status = 200 if "ok" in self.path else 403
        body = f"<html>{SECRET}</html>".encode()
        self.send_response(status)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def secret_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SecretKeeper)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEndpoint]:
    service = ServiceEndpoint("tests.services.official_python:app", tmp_path_factory.mktemp("endpoint") / "service.log")
    service.start()
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, endpoint: ServiceEndpoint) -> Iterator[DuroServer]:
    tmp = tmp_path_factory.mktemp("admin-surface")
    with DuroServer(tmp / "data", tmp / "duro.log").serving(endpoint) as server:
        yield server


def register(node: DuroServer, uri: str, **fields: object) -> tuple[int, str]:
    status, _, body = request("POST", f"{node.admin}/deployments", {"uri": uri, **fields})
    return status, json.loads(body)["message"] if status >= 400 else body.decode()


@pytest.mark.parametrize("use_http_11", [False, True])
@pytest.mark.parametrize("path", ["/forbidden", "/ok"])
def test_a_registration_aimed_at_a_loopback_service_does_not_echo_its_secret(
    node: DuroServer, secret_service: str, use_http_11: bool, path: str
) -> None:
    status, message = register(node, secret_service + path, use_http_11=use_http_11)
    assert status == 502, message
    assert SECRET not in message and "<html>" not in message, message
    assert secret_service in message, "the message names the URI it could not use"


@pytest.mark.parametrize(
    ("uri", "headers"),
    [
        ("http://127.0.0.1:9080/a b", {}),
        ("http://127.0.0.1:9080/x\r\nX-Injected: 1", {}),
        ("http://127.0.0.1:9080/\tx", {}),
        ("http://127.0.0.1:9080", {"x-token": "a\r\nX-Injected: 1"}),
        ("http://127.0.0.1:9080", {"bad name": "x"}),
    ],
)
def test_uris_and_headers_with_control_characters_or_whitespace_are_refused(node: DuroServer, uri: str, headers: dict[str, str]) -> None:
    status, message = register(node, uri, additional_headers=headers)
    assert status == 400, message
    assert "control characters" in message, message


def test_the_data_dir_is_0700_and_its_files_0600(node: DuroServer) -> None:
    assert node.call("/Greeter/greet", "perms", headers={"authorization": "Bearer client-secret"})[0] == 200
    assert node.data_dir.stat().st_mode & 0o777 == 0o700
    open_to_others = [
        (str(path.relative_to(node.data_dir)), oct(path.stat().st_mode & 0o777))
        for path in node.data_dir.rglob("*")
        if path.stat().st_mode & 0o077
    ]
    assert open_to_others == [], open_to_others
    assert (node.data_dir / "registry.json").exists() and list((node.data_dir / "log").glob("segment-*.wal"))


def test_forbidding_private_targets_refuses_them_before_contacting_them(tmp_path: Path, secret_service: str) -> None:
    env = {"DURO_INGRESS__FORBID_PRIVATE_DEPLOYMENT_TARGETS": "true"}
    with DuroServer(tmp_path / "data", tmp_path / "duro.log", env=env).serving() as node:
        seen = SecretKeeper.requests_seen
        for uri in (
            secret_service + "/ok",
            secret_service.replace("127.0.0.1", "localhost") + "/ok",
            "http://[::1]:9080",
            "http://10.1.2.3:9080",
        ):
            status, message = register(node, uri)
            assert status == 400 and "forbid_private_deployment_targets" in message, (uri, message)
        assert SecretKeeper.requests_seen == seen, "nothing was sent to the refused targets"


def test_an_allowlist_admits_only_its_hosts(tmp_path: Path, secret_service: str, endpoint: ServiceEndpoint) -> None:
    env = {"DURO_INGRESS__ALLOWED_DEPLOYMENT_HOSTS": json.dumps(["services.internal", "127.0.0.1/32"])}
    with DuroServer(tmp_path / "data", tmp_path / "duro.log", env=env).serving() as node:
        status, message = register(node, secret_service.replace("127.0.0.1", "localhost") + "/ok")
        assert status == 400 and "not in allowed_deployment_hosts" in message, message
        status, message = register(node, "http://elsewhere.example:9080")
        assert status == 400 and "'elsewhere.example'" in message, message
        status, _ = register(node, endpoint.uri)  # 127.0.0.1 is in 127.0.0.1/32
        assert status == 201

"""Request identity with real processes: duro signs discovery and invocations (Restate's scheme v1), an endpoint with `identity_keys` accepts them and refuses anyone else.

Run against the official Python SDK and duro's SDK as the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.request_identity import RequestSigner
from tests.processes import DuroServer, ServiceEndpoint, http


def _key_file(path: Path) -> tuple[Path, str]:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path, RequestSigner(key).key_id


@pytest.fixture(params=["restate", "sdk"], ids=["official-python-sdk", "duro-sdk"])
def signed_endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServiceEndpoint, Path]]:
    key_file, key_id = _key_file(tmp_path / "identity.pem")
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app",
        tmp_path / "service.log",
        {"DURO_TEST_IDENTITY_KEYS": key_id, "DURO_TEST_SDK": request.param, "DURO_TEST_SIDE_EFFECTS": str(tmp_path / "se.log")},
    )
    endpoint.start()
    try:
        endpoint.wait_ready()
        yield endpoint, key_file
    finally:
        endpoint.stop()


def _duro(tmp_path: Path, name: str, key_file: Path | None) -> DuroServer:
    env = {"DURO_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(key_file)} if key_file is not None else {}
    server = DuroServer(tmp_path / f"{name}-data", tmp_path / f"{name}.log", env=env)
    server.start()
    server.wait_ready()
    return server


def test_a_signing_duro_is_accepted_and_others_are_refused(signed_endpoint: tuple[ServiceEndpoint, Path], tmp_path: Path) -> None:
    endpoint, key_file = signed_endpoint
    status, _, body = http("GET", f"{endpoint.uri}/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"})
    assert status == 401, (status, body)  # an unsigned caller
    signing = _duro(tmp_path, "signing", key_file)
    try:
        status, _, body = http("POST", f"{signing.admin}/deployments", {"uri": endpoint.uri, "use_http_11": True})
        assert status == 201, body
        status, _, body = signing.call("/Greeter/greet", "Ada")
        assert (status, json.loads(body)) == (200, "Hello Ada!")
        status, _, body = signing.call("/Counter/signed/add", 2)  # over HTTP/1.1 request/response, then bidi below
        assert (status, json.loads(body)) == (200, 2)
    finally:
        signing.stop()
    for name, other_key in (("unsigned", None), ("wrong-key", _key_file(tmp_path / "other.pem")[0])):
        other = _duro(tmp_path, name, other_key)
        try:
            status, _, body = http("POST", f"{other.admin}/deployments", {"uri": endpoint.uri, "use_http_11": True})
            assert status == 502 and b"401" in body, (name, status, body)
        finally:
            other.stop()


def test_invocations_over_http2_are_signed_too(signed_endpoint: tuple[ServiceEndpoint, Path], tmp_path: Path) -> None:
    endpoint, key_file = signed_endpoint
    signing = _duro(tmp_path, "h2", key_file)
    try:
        signing.register(endpoint.uri)
        status, _, body = signing.call("/Steps/run_steps", 3)
        assert (status, json.loads(body)) == (200, 3)
    finally:
        signing.stop()


def test_an_unusable_key_file_stops_the_node_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", env={"DURO_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(bad)})
    server.start()
    try:
        assert server.process is not None and server.process.wait(timeout=30) != 0
        assert str(bad) in server.log_tail()
    finally:
        server.stop()


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (the test's trust root), as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


def test_https_deployment_over_http2_chosen_by_alpn(tmp_path: Path) -> None:
    cert_file, cert_key = _self_signed_certificate(tmp_path)
    identity_file, key_id = _key_file(tmp_path / "identity.pem")
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app",
        tmp_path / "service.log",
        {"DURO_TEST_IDENTITY_KEYS": key_id},
        ["--certfile", str(cert_file), "--keyfile", str(cert_key)],
    )
    endpoint.start()
    server = DuroServer(
        tmp_path / "data",
        tmp_path / "duro.log",
        env={"SSL_CERT_FILE": str(cert_file), "DURO_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(identity_file)},
    )
    server.start()
    try:
        endpoint.wait_ready()
        server.wait_ready()
        uri = f"https://127.0.0.1:{endpoint.port}"
        deployment = server.register(uri)
        assert deployment["id"].startswith("dp_")
        status, _, body = http("GET", f"{server.admin}/deployments/{deployment['id']}")
        assert json.loads(body)["http_version"] == "HTTP/2.0" and json.loads(body)["protocol_type"] == "BidiStream"
        status, _, body = server.call("/Steps/run_steps", 4)
        assert (status, json.loads(body)) == (200, 6)
    finally:
        server.stop()
        endpoint.stop()

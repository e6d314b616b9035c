"""Unit tests of request signing (protocol/request_identity.py) against Restate's key-id vector and duro's SDK verifier."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from protocol.request_identity import IdentityKeyError, RequestSigner
from sdk._identity import IdentityError, IdentityVerifier

# Restate's own test vector (crates/service-client/src/request_identity/v1.rs)
PRIVATE_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPe++4ZTPQDF81otpoU/mOGHC2vOAVp9WbiCblvn3nXO
-----END PRIVATE KEY-----"""
KEY_ID = "publickeyv1_AfQwmwfgEZhrWpvv8N52SHpRtZqGGaFr4AZN6qtYWSiY"


@pytest.fixture
def signer(tmp_path: Path) -> RequestSigner:
    path = tmp_path / "key.pem"
    path.write_bytes(PRIVATE_KEY)
    return RequestSigner.from_pem_file(path, expiration_ms=60_000)


def test_key_id_is_restates(signer: RequestSigner) -> None:
    assert signer.key_id == KEY_ID


def test_headers_carry_a_jwt_the_sdk_accepts_for_that_path_only(signer: RequestSigner) -> None:
    headers = dict(signer.headers("/invoke/Greeter/greet"))
    assert headers["x-restate-signature-scheme"] == "v1"
    header_part, claims_part, _ = headers["x-restate-jwt-v1"].split(".")
    header = json.loads(base64.urlsafe_b64decode(header_part + "=="))
    claims = json.loads(base64.urlsafe_b64decode(claims_part + "=="))
    assert header == {"typ": "JWT", "alg": "EdDSA", "kid": KEY_ID}
    assert claims["aud"] == "/invoke/Greeter/greet" and claims["exp"] - claims["iat"] == 60 and claims["iat"] - claims["nbf"] == 60
    IdentityVerifier([KEY_ID]).verify(headers, "/invoke/Greeter/greet")
    with pytest.raises(IdentityError, match="audience"):
        IdentityVerifier([KEY_ID]).verify(headers, "/invoke/Greeter/other")


def test_unusable_key_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(IdentityKeyError, match="missing.pem"):
        RequestSigner.from_pem_file(missing)
    two = tmp_path / "two.pem"
    two.write_bytes(PRIVATE_KEY + b"\n" + PRIVATE_KEY)
    with pytest.raises(IdentityKeyError, match="exactly one"):
        RequestSigner.from_pem_file(two)

"""Verifies that a request comes from the runtime: Restate's request identity, an Ed25519-signed JWT.

The runtime sends `x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <jwt>`;
the JWT (alg EdDSA) carries `aud` = the request path (from `/invoke/...` or
`/discover`), `exp`, `nbf` and `iat`. Keys are given as `publickeyv1_` +
base58 of the 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

KEY_PREFIX = "publickeyv1_"
SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PUBLIC_KEY_BYTES = 32


class IdentityError(Exception):
    """The request is not signed by one of the configured keys; the message says why."""


class IdentityVerifier:
    """Checks request signatures against a set of public keys; with no keys every request passes."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self._keys = [_load_key(key) for key in keys]

    def verify(self, headers: Mapping[str, str], path: str, now_s: float | None = None) -> None:
        """Raises IdentityError unless `headers` carry a valid signature for `path`."""
        if not self._keys:
            return
        scheme = headers.get(SCHEME_HEADER)
        if scheme is None:
            raise IdentityError(f"missing header {SCHEME_HEADER}; expected 'v1' with a signed JWT")
        if scheme == "unsigned":
            raise IdentityError("got an unsigned request, but request identity keys are configured")
        if scheme != "v1":
            raise IdentityError(f"unknown {SCHEME_HEADER} {scheme!r}; expected 'v1'")
        token = headers.get(JWT_HEADER)
        if token is None:
            raise IdentityError(f"missing header {JWT_HEADER}")
        self._verify_token(token, normalise_path(path), time.time() if now_s is None else now_s)

    def _verify_token(self, token: str, audience: str, now_s: float) -> None:
        header, claims, signed, signature = _split_jwt(token)
        if header.get("alg") != "EdDSA":
            raise IdentityError(f"JWT alg is {header.get('alg')!r}; expected 'EdDSA'")
        if not any(_signature_valid(key, signature, signed) for key in self._keys):
            raise IdentityError("JWT signature matches none of the configured keys")
        _check_claims(claims, audience, now_s)


def normalise_path(path: str) -> str:
    """The part of `path` the JWT audience names: from `/invoke/...` or the final `/discover`."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == "invoke":
        return "/" + "/".join(parts[-3:])
    if parts[-1] == "discover":
        return "/discover"
    return path


def _load_key(key: str) -> Any:
    if not key.startswith(KEY_PREFIX):
        raise ValueError(f"identity key {key!r} must start with {KEY_PREFIX!r}")
    raw = _base58_decode(key[len(KEY_PREFIX) :])
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise ValueError(f"identity key {key!r} decodes to {len(raw)} bytes; expected {_PUBLIC_KEY_BYTES}")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def _signature_valid(key: Any, signature: bytes, signed: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return False
    return True


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    pieces = token.split(".")
    if len(pieces) != 3:
        raise IdentityError("JWT must have three dot-separated parts")
    try:
        header = json.loads(_b64url(pieces[0]))
        claims = json.loads(_b64url(pieces[1]))
        signature = _b64url(pieces[2])
    except (binascii.Error, ValueError) as error:
        raise IdentityError(f"JWT is not valid base64url JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise IdentityError("JWT header and claims must be JSON objects")
    return header, claims, f"{pieces[0]}.{pieces[1]}".encode("ascii"), signature


def _check_claims(claims: dict[str, Any], audience: str, now_s: float) -> None:
    for claim in ("aud", "exp", "iat", "nbf"):
        if claim not in claims:
            raise IdentityError(f"JWT lacks the {claim!r} claim")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if audience not in audiences:
        raise IdentityError(f"JWT audience {claims['aud']!r} does not name {audience!r}")
    if now_s >= float(claims["exp"]):
        raise IdentityError("JWT expired")
    if now_s < float(claims["nbf"]):
        raise IdentityError("JWT is not valid yet (nbf in the future)")


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _BASE58_ALPHABET.find(char)
        if digit < 0:
            raise ValueError(f"{char!r} is not a base58 character")
        number = number * 58 + digit
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * leading_zeros + body

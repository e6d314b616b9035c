"""Signs requests to deployments with Restate's request identity, scheme v1, so SDKs configured with `identity_keys` accept them.

Every request to a deployment (discovery and invocations) carries
`x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT>`. The JWT's
header is `{"typ": "JWT", "alg": "EdDSA", "kid": "publickeyv1_<base58 public key>"}`,
its claims `aud` (the request path), `iat`, and `nbf`/`exp` the issuing time
minus/plus the expiration leeway (Restate's default: 60 s); it is signed with
the Ed25519 private key read from a PEM file (`openssl genpkey -algorithm ed25519`).
The SDK checks the signature against the public keys it was given
(`publickeyv1_...`, the signer's `key_id`).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SCHEME_HEADER: Final = "x-restate-signature-scheme"
JWT_HEADER: Final = "x-restate-jwt-v1"
KEY_ID_PREFIX: Final = "publickeyv1_"
DEFAULT_EXPIRATION_MS: Final = 60_000
_BASE58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IdentityKeyError(Exception):
    """The private key file cannot be used; the message names the file and what is wrong."""


class RequestSigner:
    """Makes the identity headers of one request from an Ed25519 private key."""

    def __init__(
        self, private_key: Ed25519PrivateKey, expiration_ms: int = DEFAULT_EXPIRATION_MS, clock_s: Callable[[], float] = time.time
    ) -> None:
        assert expiration_ms > 0, "the JWT validity window must be positive"
        self._key = private_key
        self._expiration_s = expiration_ms // 1000 or 1
        self._clock_s = clock_s
        public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = KEY_ID_PREFIX + base58_encode(public)
        self._header = _b64url(json.dumps({"typ": "JWT", "alg": "EdDSA", "kid": self.key_id}, separators=(",", ":")).encode())

    @classmethod
    def from_pem_file(cls, path: Path, expiration_ms: int = DEFAULT_EXPIRATION_MS) -> RequestSigner:
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise IdentityKeyError(f"cannot read the request identity key {path}: {error}") from None
        if pem.count(b"-----BEGIN") != 1:
            raise IdentityKeyError(f"{path} must hold exactly one PEM private key, it holds {pem.count(b'-----BEGIN')}")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise IdentityKeyError(f"{path} is not an unencrypted PEM private key: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityKeyError(f"{path} holds a {type(key).__name__}; expected an Ed25519 key (openssl genpkey -algorithm ed25519)")
        return cls(key, expiration_ms)

    def headers(self, path: str) -> list[tuple[str, str]]:
        """The identity headers of a request to `path` (the URL path, e.g. `/invoke/Greeter/greet`)."""
        now = int(self._clock_s())
        claims = {"aud": path, "exp": now + self._expiration_s, "iat": now, "nbf": max(0, now - self._expiration_s)}
        signed = self._header + "." + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = self._key.sign(signed.encode("ascii"))
        return [(SCHEME_HEADER, "v1"), (JWT_HEADER, signed + "." + _b64url(signature))]


def base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[digit])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(digits))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

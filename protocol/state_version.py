"""The version of an object's state that `POST /services/{service}/state` compares against: Restate's, so the CLI's `state edit` works.

SHA-256 over the (key, value) pairs sorted by key, each preceded by its index
(8 bytes big-endian) and framed by the bytes 1, 2 and 3; base64url without
padding. `restate state get` shows nothing of it; `restate state edit` reads the
state, computes this version and sends it with the new state.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable


def state_version(state: Iterable[tuple[bytes, bytes]]) -> str:
    digest = hashlib.sha256()
    for index, (key, value) in enumerate(sorted(state)):
        digest.update(index.to_bytes(8, "big"))
        digest.update(b"\x01")
        digest.update(key)
        digest.update(b"\x02")
        digest.update(value)
        digest.update(b"\x03")
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()

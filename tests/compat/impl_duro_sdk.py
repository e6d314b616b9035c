"""duro's own Python SDK (`sdk/`) in the matrix: the reference services' code, built with `sdk` instead of `restate`.

It runs against duro and against the real Restate server (`on_restate`), which
is how duro's SDK is proven against the reference runtime.
"""

from __future__ import annotations

import sys

from duro import __version__
from tests.compat.implementations import Implementation

_COMMAND = [sys.executable, "-m", "tests.services.serve", "tests.services.official_python:app", "--port", "{port}"]
_ENV = {"DURO_TEST_SDK": "sdk"}

IMPLEMENTATIONS = [
    Implementation("duro-sdk h2", "python", _COMMAND, env=_ENV, version=f"duro sdk {__version__}", on_restate=True, v7_column=True),
    Implementation("duro-sdk http1.1", "python", _COMMAND, env=_ENV, use_http_11=True, version=f"duro sdk {__version__}", on_restate=True),
]

"""JSON from clients and from deployments, parsed with every failure a ValueError: malformed, not UTF-8, or nested too deeply.

Python's parser recurses once per level of nesting, so a body of a few
thousand `[` would otherwise end in a RecursionError (a 500). `parse_json`
turns that into `JsonTooDeep`, a ValueError naming the bound, so callers
answer 400 for every bad body with one `except ValueError`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_HEADROOM_FRAMES = 100  # the request's own call stack below the parser


class JsonTooDeep(ValueError):
    """The JSON value nests deeper than the parser can follow."""


def max_json_depth() -> int:
    """About how deep a JSON value may nest: the interpreter's recursion limit less the request's own stack."""
    return sys.getrecursionlimit() - _HEADROOM_FRAMES


def parse_json(data: bytes | str) -> Any:
    """`json.loads`, raising only ValueError: JSONDecodeError, UnicodeDecodeError, or JsonTooDeep."""
    try:
        return json.loads(data)
    except RecursionError:
        raise JsonTooDeep(f"the JSON value nests deeper than this server parses (about {max_json_depth()} levels)") from None

"""Cutting a byte string where a property test says, to feed it to a stream decoder in pieces."""

from __future__ import annotations

import itertools


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the positions `cuts` names (each taken modulo its length + 1); the pieces join back to `data`."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in itertools.pairwise(points)]

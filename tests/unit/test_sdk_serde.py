"""Tests how duro's SDK picks codecs from type hints and (de)serializes values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
from pydantic import BaseModel

from sdk import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde
from sdk._serde import json_schema_of, serde_for_hint, unwrap_optional


class Item(BaseModel):
    name: str
    price: float


@dataclass
class Point:
    x: int
    y: int


def test_none_is_empty_bytes_and_back() -> None:
    for serde in (DefaultSerde(), JsonSerde(), PydanticJsonSerde(Item)):
        assert serde.serialize(None) == b""
        assert serde.deserialize(b"") is None


def test_default_serde_without_hint_is_plain_json() -> None:
    serde = DefaultSerde()

    assert serde.serialize({"a": [1, 2]}) == b'{"a": [1, 2]}'
    assert serde.deserialize(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_pydantic_hint_builds_models() -> None:
    serde = serde_for_hint(DefaultSerde(), Item)

    value = serde.deserialize(b'{"name": "pen", "price": 2}')

    assert isinstance(serde, PydanticJsonSerde)
    assert value == Item(name="pen", price=2.0)
    assert serde.serialize(value) == b'{"name":"pen","price":2.0}'


def test_dataclass_and_container_hints_go_through_pydantic() -> None:
    point = DefaultSerde(Point).deserialize(b'{"x": 1, "y": 2}')
    items = DefaultSerde(list[Item]).deserialize(b'[{"name": "a", "price": 1}]')

    assert point == Point(1, 2)
    assert items == [Item(name="a", price=1.0)]
    assert DefaultSerde().serialize(Point(3, 4)) == b'{"x": 3, "y": 4}'


def test_optional_hint_uses_the_inner_type() -> None:
    assert unwrap_optional(Optional[Item]) == (True, Item)  # noqa: UP045 - the typing.Optional spelling is under test
    assert unwrap_optional(Item | None) == (True, Item)
    assert isinstance(serde_for_hint(DefaultSerde(), Optional[Item]), PydanticJsonSerde)  # noqa: UP045 - the typing.Optional spelling is under test


def test_bytes_hint_passes_bytes_through() -> None:
    serde = serde_for_hint(DefaultSerde(), bytes)

    assert isinstance(serde, BytesSerde)
    assert serde.deserialize(b"\x00\x01") == b"\x00\x01"


def test_explicit_serde_is_kept() -> None:
    explicit = JsonSerde[Item]()

    assert serde_for_hint(explicit, Item) is explicit


def test_invalid_model_input_raises() -> None:
    with pytest.raises(ValueError):
        PydanticJsonSerde(Item).deserialize(b'{"name": 1}')


def test_json_schemas() -> None:
    assert json_schema_of(int) == {"type": "integer"}
    assert json_schema_of(Item)["properties"]["price"] == {"title": "Price", "type": "number"}
    assert json_schema_of(object()) is True

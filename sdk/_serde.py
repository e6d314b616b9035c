"""Turns handler inputs, outputs, state values and run results into bytes and back.

JSON is the default. Type hints pick the codec: a pydantic model is validated
into the model, a dataclass (or a container of models) goes through a pydantic
`TypeAdapter`, `bytes` passes through, anything else is plain `json`. `None`
is the empty byte string and the empty byte string reads back as `None`.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import types
import typing
from typing import Any, Generic, TypeVar, Union

import pydantic

T = TypeVar("T")


class Serde(Generic[T], abc.ABC):
    """Serializes values of T to bytes and back."""

    @abc.abstractmethod
    def deserialize(self, buf: bytes) -> T | None:
        """The value in `buf`."""

    @abc.abstractmethod
    def serialize(self, obj: T | None) -> bytes:
        """The bytes of `obj`."""


class BytesSerde(Serde[bytes]):
    """Passes bytes through unchanged."""

    def deserialize(self, buf: bytes) -> bytes | None:
        return bytes(buf)

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


class JsonSerde(Serde[T]):
    """Plain `json.dumps`/`json.loads`."""

    def deserialize(self, buf: bytes) -> T | None:
        if not buf:
            return None
        return typing.cast(T, json.loads(buf))

    def serialize(self, obj: T | None) -> bytes:
        if obj is None:
            return b""
        return json.dumps(obj).encode("utf-8")


class PydanticJsonSerde(Serde[T]):
    """A pydantic model (or any type pydantic can validate) as JSON."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._adapter = pydantic.TypeAdapter(model)

    def deserialize(self, buf: bytes) -> T | None:
        if not buf:
            return None
        return typing.cast(T, self._adapter.validate_json(buf))

    def serialize(self, obj: T | None) -> bytes:
        if obj is None:
            return b""
        return self._adapter.dump_json(obj)


class DefaultSerde(Serde[T]):
    """JSON, picking pydantic validation when the type hint is a model or a dataclass."""

    def __init__(self, type_hint: Any = None) -> None:
        self.type_hint = type_hint

    def with_maybe_type(self, type_hint: Any = None) -> DefaultSerde[T]:
        """A DefaultSerde for `type_hint` (this one is left unchanged)."""
        return DefaultSerde(type_hint)

    def deserialize(self, buf: bytes) -> T | None:
        if not buf:
            return None
        if needs_pydantic(self.type_hint):
            return typing.cast(T, _adapter(self.type_hint).validate_json(buf))
        return typing.cast(T, json.loads(buf))

    def serialize(self, obj: T | None) -> bytes:
        if obj is None:
            return b""
        if isinstance(obj, pydantic.BaseModel):
            return obj.model_dump_json().encode("utf-8")
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return json.dumps(dataclasses.asdict(obj)).encode("utf-8")
        if needs_pydantic(self.type_hint):
            return _adapter(self.type_hint).dump_json(obj)
        return json.dumps(obj).encode("utf-8")


def is_pydantic_model(annotation: Any) -> bool:
    """True if `annotation` is a pydantic model class."""
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def needs_pydantic(annotation: Any) -> bool:
    """True if plain json cannot rebuild values of `annotation` (models, dataclasses, containers of them)."""
    if annotation is None:
        return False
    if is_pydantic_model(annotation) or (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
        return True
    return any(needs_pydantic(argument) for argument in typing.get_args(annotation))


def unwrap_optional(annotation: Any) -> tuple[bool, Any]:
    """(True, T) for Optional[T] / T | None, else (False, annotation)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (Union, types.UnionType) and len(arguments) == 2 and type(None) in arguments:
        inner = arguments[0] if arguments[1] is type(None) else arguments[1]
        return True, inner
    return False, annotation


def json_schema_of(annotation: Any) -> Any:
    """A JSON schema for `annotation`, or True (anything) when none can be derived cheaply."""
    try:
        return _adapter(annotation).json_schema(mode="serialization")
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError, ValueError):
        return True


def serde_for_hint(serde: Serde[Any], annotation: Any) -> Serde[Any]:
    """The serde to use for values of `annotation` when the user passed `serde` (default: by hint)."""
    if not isinstance(serde, DefaultSerde):
        return serde
    _, core = unwrap_optional(annotation)
    if core is bytes:
        return BytesSerde()
    if is_pydantic_model(core):
        return PydanticJsonSerde(core)
    return serde.with_maybe_type(core)


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    try:
        return _ADAPTERS[annotation]
    except (KeyError, TypeError):
        pass
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
    try:
        _ADAPTERS[annotation] = adapter
    except TypeError:
        pass
    return adapter

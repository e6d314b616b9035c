"""Kafka client properties in librdkafka's names (as Restate's subscriptions and Kafka clusters take them), checked and mapped to aiokafka.

Restate hands cluster properties and subscription options to librdkafka
unchanged; duro's consumer is aiokafka, so it accepts the properties it can
honour (`SUPPORTED_PROPERTIES`) and refuses any other with a message naming
it and the supported ones. Subscription options override cluster properties.
Secrets (anything named like a password, secret or key location) are shown
redacted, as Restate does.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

BOOTSTRAP_PROPERTIES: Final = ("bootstrap.servers", "metadata.broker.list")
GROUP_ID: Final = "group.id"
CLIENT_ID: Final = "client.id"
AUTO_OFFSET_RESET: Final = "auto.offset.reset"
DEFAULT_CLIENT_ID: Final = "duro"
REDACTED: Final = "***"

_OFFSET_RESETS: Final = {
    "smallest": "earliest",
    "earliest": "earliest",
    "beginning": "earliest",
    "largest": "latest",
    "latest": "latest",
    "end": "latest",
    "error": "none",
}
_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_ISOLATION_LEVELS: Final = ("read_uncommitted", "read_committed")
_SSL_PROPERTIES: Final = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password")
_SENSITIVE_WORDS: Final = ("password", "secret", "passphrase", "sasl.username", "sasl.jaas.config", "ssl.key.location")


class KafkaOptionError(ValueError):
    """A property duro cannot honour, or a value it cannot use; the message names both and what is expected."""


def _text(value: str) -> str:
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise KafkaOptionError(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise KafkaOptionError(f"expected a positive number, got {value!r}")
    return number


def _one_of(choices: tuple[str, ...], upper: bool) -> Callable[[str], str]:
    def parse(value: str) -> str:
        normalized = value.upper() if upper else value.lower()
        if normalized not in choices:
            raise KafkaOptionError(f"expected one of {', '.join(choices)}, got {value!r}")
        return normalized

    return parse


def _offset_reset(value: str) -> str:
    mapped = _OFFSET_RESETS.get(value.lower())
    if mapped is None:
        raise KafkaOptionError(f"expected one of {', '.join(_OFFSET_RESETS)}, got {value!r}")
    return mapped


def _ignored(value: str) -> None:
    return None


# librdkafka name -> (aiokafka keyword or None when the value is only checked, parser)
_CONNECTION: Final[dict[str, tuple[str | None, Callable[[str], Any]]]] = {
    "bootstrap.servers": ("bootstrap_servers", _text),
    "metadata.broker.list": ("bootstrap_servers", _text),
    CLIENT_ID: ("client_id", _text),
    "request.timeout.ms": ("request_timeout_ms", _positive_int),
    "security.protocol": ("security_protocol", _one_of(_SECURITY_PROTOCOLS, upper=True)),
    "sasl.mechanism": ("sasl_mechanism", _one_of(_SASL_MECHANISMS, upper=True)),
    "sasl.mechanisms": ("sasl_mechanism", _one_of(_SASL_MECHANISMS, upper=True)),
    "sasl.username": ("sasl_plain_username", _text),
    "sasl.password": ("sasl_plain_password", _text),
    **{name: (None, _text) for name in _SSL_PROPERTIES},
}
_CONSUMER: Final[dict[str, tuple[str | None, Callable[[str], Any]]]] = {
    GROUP_ID: ("group_id", _text),
    AUTO_OFFSET_RESET: ("auto_offset_reset", _offset_reset),
    "session.timeout.ms": ("session_timeout_ms", _positive_int),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", _positive_int),
    "max.poll.interval.ms": ("max_poll_interval_ms", _positive_int),
    "fetch.max.bytes": ("fetch_max_bytes", _positive_int),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _positive_int),
    "fetch.min.bytes": ("fetch_min_bytes", _positive_int),
    "fetch.wait.max.ms": ("fetch_max_wait_ms", _positive_int),
    "isolation.level": ("isolation_level", _one_of(_ISOLATION_LEVELS, upper=False)),
    # duro commits positions itself once invocations are durable, as Restate does: these are accepted and ignored
    "enable.auto.commit": (None, _ignored),
    "enable.auto.offset.store": (None, _ignored),
}
SUPPORTED_PROPERTIES: Final = tuple(sorted({*_CONNECTION, *_CONSUMER}))


def check_properties(properties: Mapping[str, str], what: str) -> None:
    """Raise KafkaOptionError naming the first property duro does not support or whose value it cannot use."""
    for name, value in properties.items():
        entry = _CONNECTION.get(name) or _CONSUMER.get(name)
        if entry is None:
            raise KafkaOptionError(
                f"{what} '{name}' is not supported by duro's Kafka consumer; supported: {', '.join(SUPPORTED_PROPERTIES)}"
            )
        if not isinstance(value, str):
            raise KafkaOptionError(f"{what} '{name}' must be a string, got {value!r}")
        try:
            entry[1](value)
        except KafkaOptionError as error:
            raise KafkaOptionError(f"{what} '{name}' is invalid: {error}") from None


def bootstrap_of(properties: Mapping[str, str]) -> str | None:
    """The bootstrap servers a set of properties names (`bootstrap.servers` first, then `metadata.broker.list`)."""
    for name in BOOTSTRAP_PROPERTIES:
        value = properties.get(name)
        if value:
            return value
    return None


def connection_kwargs(properties: Mapping[str, str]) -> dict[str, Any]:
    """aiokafka keyword arguments for connecting (any client: consumer, admin) from checked properties."""
    kwargs = _mapped(properties, _CONNECTION)
    kwargs["bootstrap_servers"] = bootstrap_of(properties)
    context = _ssl_context(properties)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def consumer_kwargs(properties: Mapping[str, str]) -> dict[str, Any]:
    """aiokafka `AIOKafkaConsumer` keyword arguments from checked properties (connection and consumer ones)."""
    return {**connection_kwargs(properties), **_mapped(properties, _CONSUMER)}


def redacted(properties: Mapping[str, str]) -> dict[str, str]:
    """The properties with secret values replaced by `***` (what the admin API shows)."""
    return {name: REDACTED if _is_sensitive(name) else value for name, value in properties.items()}


def _mapped(properties: Mapping[str, str], table: Mapping[str, tuple[str | None, Callable[[str], Any]]]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in properties.items():
        entry = table.get(name)
        if entry is not None and entry[0] is not None:
            kwargs[entry[0]] = entry[1](value)
    return kwargs


def _ssl_context(properties: Mapping[str, str]) -> ssl.SSLContext | None:
    if not any(name in properties for name in _SSL_PROPERTIES):
        return None
    context = ssl.create_default_context(cafile=properties.get("ssl.ca.location"))
    certificate = properties.get("ssl.certificate.location")
    if certificate is not None:
        context.load_cert_chain(certificate, properties.get("ssl.key.location"), properties.get("ssl.key.password"))
    return context


def _is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE_WORDS)

"""The chain of size limits, checked against each other at start-up: what the ingress, the invoker and subscriptions accept must fit one log append.

Every request body (an `Invoke`), every message from a deployment (an
`AttemptEvents` record) and every subscribed Kafka record becomes one record
in the log, so each limit on them must leave room for the record around it
within the log's `max_append_bytes`. A limit the operator set that does not
fit stops start-up with a message naming both settings; a limit left at its
default is lowered to what fits (on Kafka, whose appends are smaller than the
embedded log's, the defaults would not).
"""

from __future__ import annotations

from dataclasses import dataclass

from duro.settings import DuroSettings
from ingress.settings import IngressSettings, SubscriptionSettings
from partition_worker.settings import InvokerSettings, ProcessorSettings
from wal.embedded import EmbeddedLogLimits
from wal.kafka_settings import KafkaLogSettings

RECORD_ALLOWANCE_BYTES = 64 * 1024
"""What a record may add around its largest payload: ids, target, forwarded headers, envelope and the log's own framing."""


class LimitsError(ValueError):
    """Two settings that do not fit together; the message names both and says which way to change them."""


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """The limits the node runs with once checked against the log's append limit."""

    max_append_bytes: int
    ingress: IngressSettings
    invoker: InvokerSettings
    subscriptions: SubscriptionSettings


def effective_limits(settings: DuroSettings) -> EffectiveLimits:
    """Check the chain (body, frame and subscribed record, each plus RECORD_ALLOWANCE_BYTES, within max_append_bytes) and the rest."""
    backend_default = EmbeddedLogLimits().max_append_bytes if settings.log == "embedded" else KafkaLogSettings().max_append_bytes
    max_append_bytes = settings.max_append_bytes or backend_default
    room = max_append_bytes - RECORD_ALLOWANCE_BYTES
    if room <= 0:
        raise LimitsError(
            f"max_append_bytes ({max_append_bytes}) leaves no room for a record: it must exceed the record allowance ({RECORD_ALLOWANCE_BYTES})"
        )
    append_name = "max_append_bytes" if settings.max_append_bytes else f"the {settings.log} log's max_append_bytes"
    fit = _Fitter(room, max_append_bytes, append_name)
    ingress = settings.ingress.model_copy(update={"max_body_bytes": fit("ingress.max_body_bytes", settings.ingress, "max_body_bytes")})
    invoker = settings.invoker.model_copy(update={"max_frame_bytes": fit("invoker.max_frame_bytes", settings.invoker, "max_frame_bytes")})
    subscriptions = settings.subscriptions.model_copy(
        update={"max_record_bytes": fit("subscriptions.max_record_bytes", settings.subscriptions, "max_record_bytes")}
    )
    _check_backoff(settings.processor)
    return EffectiveLimits(max_append_bytes, ingress, invoker, subscriptions)


@dataclass(frozen=True, slots=True)
class _Fitter:
    room: int
    max_append_bytes: int
    append_name: str

    def __call__(self, name: str, model: IngressSettings | InvokerSettings | SubscriptionSettings, field: str) -> int:
        value = int(getattr(model, field))
        if value <= self.room:
            return value
        if field in model.model_fields_set:
            raise LimitsError(
                f"{name} ({value}) must be at most {self.append_name} ({self.max_append_bytes}) minus the record allowance"
                f" ({RECORD_ALLOWANCE_BYTES}), that is {self.room}: anything larger could not be appended to the log."
                f" Lower {name} or raise max_append_bytes"
            )
        return self.room  # a default larger than this log takes: lowered to what fits


def _check_backoff(processor: ProcessorSettings) -> None:
    if processor.leader_task_restart_initial_backoff_ms > processor.leader_task_restart_max_backoff_ms:
        raise LimitsError(
            f"processor.leader_task_restart_initial_backoff_ms ({processor.leader_task_restart_initial_backoff_ms}) must be at most"
            f" processor.leader_task_restart_max_backoff_ms ({processor.leader_task_restart_max_backoff_ms})"
        )

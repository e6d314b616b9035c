"""`IngressSettings`: every limit, timeout and default retention of the ingress and the admin API, with its default; `ServiceDefaults` the admin API shows."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from protocol.retention import RetentionPolicy
from wal.records import RetryPolicy

MIB = 1024 * 1024
HOUR_MS = 3_600_000


class IngressSettings(BaseModel):
    """Settings of the HTTP ingress and the admin API; the CLI's settings embed this model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=10 * MIB, ge=0, description="Largest request body accepted; larger → 413.")
    call_timeout_ms: int = Field(
        default=24 * HOUR_MS,
        gt=0,
        description="How long a call or a blocking attach waits for the outcome before answering 504 (the invocation goes on).",
    )
    submit_timeout_ms: int = Field(
        default=30_000,
        gt=0,
        description="How long a send waits for its partition to confirm the Invoke, and a non-blocking output read for its answer.",
    )
    reply_nudge_interval_ms: int = Field(
        default=5_000,
        gt=0,
        description="A waiting request with no reply this long asks the partition again (a leader change can lose a reply).",
    )
    admin_command_timeout_ms: int = Field(
        default=30_000, gt=0, description="How long cancel/kill/purge/resume wait for the partition's answer."
    )
    default_journal_retention_ms: int = Field(
        default=24 * HOUR_MS,
        ge=0,
        description="Keep a completed invocation's journal (and its status and outcome) this long, unless its service declares"
        " journal_retention; 0 keeps neither (Restate's default-journal-retention).",
    )
    default_idempotency_retention_ms: int = Field(
        default=24 * HOUR_MS,
        ge=0,
        description="Keep the outcome of a completed invocation that had an idempotency key this long, unless its service declares"
        " idempotency_retention.",
    )
    default_workflow_completion_retention_ms: int = Field(
        default=24 * HOUR_MS,
        ge=0,
        description="Keep a completed workflow run (outcome, state, promises) this long, unless the workflow declares"
        " workflow_completion_retention.",
    )
    advertised_ingress_url: str = Field(default="http://127.0.0.1:8080/", description="Ingress address the admin API's /version reports.")
    discovery_connect_timeout_ms: int = Field(default=5_000, gt=0, description="Connect timeout of GET {uri}/discover.")
    discovery_timeout_ms: int = Field(default=10_000, gt=0, description="Whole-request timeout of GET {uri}/discover.")
    max_manifest_bytes: int = Field(default=10 * MIB, gt=0, description="Largest discovery response accepted.")
    max_query_rows: int = Field(
        default=10_000,
        gt=0,
        description="Most rows one POST /query answers; a longer result is cut there and says so in `x-duro-rows-truncated-at`.",
    )
    query_timeout_ms: int = Field(
        default=30_000, gt=0, description="How long one POST /query may take (reading the partitions and running the SQL) before 504."
    )
    max_concurrent_queries: int = Field(
        default=2, gt=0, description="POST /query runs at most this many queries at once, each in a worker thread; others wait."
    )

    @property
    def retention_defaults(self) -> RetentionPolicy:
        """The node's retention defaults, which a service's or handler's declared retention overrides."""
        return RetentionPolicy(
            self.default_journal_retention_ms, self.default_idempotency_retention_ms, self.default_workflow_completion_retention_ms
        )


@dataclass(frozen=True, slots=True)
class ServiceDefaults:
    """The node's defaults for what a service may declare, as the admin API shows them (the invoker's and the retry settings)."""

    retry_policy: RetryPolicy
    inactivity_timeout_ms: int
    abort_timeout_ms: int

"""`IngressSettings` and `SubscriptionSettings`: every limit, timeout and default of the ingress, the admin API and Kafka subscriptions; `ServiceDefaults` the admin API shows."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from protocol.retention import RetentionPolicy
from wal.records import RetryPolicy

MIB = 1024 * 1024
HOUR_MS = 3_600_000


class KafkaClusterConfig(BaseModel):
    """A Kafka cluster subscriptions can name, as Restate's `ingress.kafka-clusters` entries: a name, brokers, and more client properties.

    Any key besides `name` and `brokers` is a client property in librdkafka's
    name (quote it in TOML: `"security.protocol" = "SASL_SSL"`).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(description="The name subscriptions use: kafka://<name>/<topic>.")
    brokers: list[str] = Field(min_length=1, description="Bootstrap servers, HOST:PORT each.")

    @property
    def properties(self) -> dict[str, str]:
        return {key: str(value) for key, value in (self.model_extra or {}).items()}


class IngressSettings(BaseModel):
    """Settings of the HTTP ingress and the admin API; the CLI's settings embed this model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=10 * MIB, ge=0, description="Largest request body accepted; larger → 413.")
    max_admin_body_bytes: int = Field(default=MIB, gt=0, description="Largest request body the admin API reads; larger → 413.")
    max_internal_body_bytes: int = Field(
        default=40 * MIB,
        gt=0,
        description="Largest body of a node-to-node request (/internal/..., e.g. a reply carrying an invocation's output); larger → 413.",
    )
    max_ingress_connections: int = Field(
        default=10_000,
        gt=0,
        description="Open connections to the ingress at once; one more is answered 503 and closed. Lowered at start-up to fit"
        " the file descriptor limit.",
    )
    max_admin_connections: int = Field(default=128, gt=0, description="Open connections to the admin API at once; as above.")
    idle_timeout_ms: int = Field(
        default=5_000, gt=0, description="A connection with no request in progress is closed after this long (new or kept alive)."
    )
    header_read_timeout_ms: int = Field(
        default=10_000, gt=0, description="A request's line and headers must arrive within this long of its first byte, else 408."
    )
    max_header_bytes: int = Field(default=64 * 1024, gt=0, description="Largest request line plus headers; larger → 431.")
    max_header_count: int = Field(default=100, gt=0, description="Most headers in one request; more → 431.")
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
    admin_token: SecretStr | None = Field(
        default=None,
        description="If set, admin requests (all but GET /health) need 'Authorization: Bearer <token>' (the restate CLI's"
        " RESTATE_AUTH_TOKEN); every node of a cluster needs the same one.",
    )
    ingress_token: SecretStr | None = Field(
        default=None,
        description="If set, ingress requests (all but GET /restate/health) need 'Authorization: Bearer <token>';"
        " that header is then not forwarded to the services.",
    )
    allowed_deployment_hosts: tuple[str, ...] = Field(
        default=(),
        description="If set, the only hosts POST /deployments may register: host names, *.domain suffixes, IP addresses or"
        ' CIDR networks (DURO_INGRESS__ALLOWED_DEPLOYMENT_HOSTS=\'["svc.internal", "10.0.0.0/8"]\'). Empty: any host.',
    )
    forbid_private_deployment_targets: bool = Field(
        default=False,
        description="Refuse deployment URIs whose host is or resolves to a loopback, private, link-local or otherwise"
        " non-public address (for clusters where the admin API must not reach into the node's own network).",
    )
    discovery_connect_timeout_ms: int = Field(default=5_000, gt=0, description="Connect timeout of GET {uri}/discover.")
    discovery_timeout_ms: int = Field(default=10_000, gt=0, description="Whole-request timeout of GET {uri}/discover.")
    max_manifest_bytes: int = Field(default=10 * MIB, gt=0, description="Largest discovery response accepted.")
    max_query_rows: int = Field(
        default=10_000,
        gt=0,
        description="Most rows one POST /query answers; a longer result is cut there and says so in `x-duro-rows-truncated-at`.",
    )
    fail_deadlocked_calls: bool = Field(
        default=False,
        description="A call that closes a cycle of exclusive invocations waiting on each other (an object calling itself, A/x ->"
        " B/y -> A/x) fails with 508 naming the cycle, freeing its caller; off: the cycle is only reported (sys_deadlock, a log"
        " line, duro_deadlocks_detected_total), as Restate leaves it to the operator. Carried in each invocation's Invoke record.",
    )
    query_timeout_ms: int = Field(
        default=30_000, gt=0, description="How long one POST /query may take (reading the partitions and running the SQL) before 504."
    )
    max_concurrent_queries: int = Field(
        default=2, gt=0, description="POST /query runs at most this many queries at once, each in a worker thread; others wait."
    )
    kafka_clusters: tuple[KafkaClusterConfig, ...] = Field(
        default=(), description="Kafka clusters subscriptions can consume from (more can be added with POST /kafka-clusters)."
    )

    @property
    def retention_defaults(self) -> RetentionPolicy:
        """The node's retention defaults, which a service's or handler's declared retention overrides."""
        return RetentionPolicy(
            self.default_journal_retention_ms, self.default_idempotency_retention_ms, self.default_workflow_completion_retention_ms
        )

    @field_validator("admin_token", "ingress_token")
    @classmethod
    def _token_not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            raise ValueError("an empty token would admit anyone; unset it to turn authentication off")
        return token


class SubscriptionSettings(BaseModel):
    """How this node consumes the Kafka topics of subscriptions (`DURO_SUBSCRIPTIONS__...`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pending_invocations: int = Field(
        default=1_000,
        gt=0,
        description="Invocations one subscription has started from this node (from this worker process, in a node of several)"
        " and that have not completed; at this many its consumer pauses, and it resumes below it.",
    )
    resume_pending_invocations: int = Field(
        default=500,
        gt=0,
        description="A paused consumer resumes once at most this many (and fewer than max_pending_invocations) are pending, so"
        " that it resumes with a batch's worth of room instead of one record at a time.",
    )
    max_batch_records: int = Field(default=500, gt=0, description="Records fetched, appended and committed together.")
    max_inflight_batches: int = Field(
        default=4,
        gt=0,
        description="Batches whose appends may be under way at once (the consumer polls on meanwhile); a batch's appends to a"
        " partition start only after the previous batch's to that partition succeeded.",
    )
    max_record_bytes: int = Field(
        default=10 * MIB,
        gt=0,
        description="Largest record value that becomes an invocation; larger records are skipped, counted and logged.",
    )
    session_timeout_ms: int = Field(
        default=6_000,
        gt=0,
        description="A node silent this long loses its topic partitions to the others (unless the subscription sets session.timeout.ms).",
    )
    heartbeat_interval_ms: int = Field(default=1_000, gt=0, description="How often a consumer tells its group it is alive.")
    max_poll_interval_ms: int = Field(
        default=60_000, gt=0, description="The group drops a consumer that has not polled this long (a paused consumer keeps polling)."
    )
    commit_interval_ms: int = Field(
        default=1_000,
        gt=0,
        description="Durable positions are committed at most this often (and at every rebalance and stop); a crash delivers"
        " what came after the last commit again, and the partitions drop it.",
    )
    poll_timeout_ms: int = Field(
        default=500, gt=0, description="How long one poll waits for records before the consumer looks at its state again."
    )
    pending_nudge_interval_ms: int = Field(
        default=5_000,
        gt=0,
        description="A pending invocation with no outcome this long is asked for again (a leader change or a duplicate can lose the answer).",
    )
    lag_refresh_interval_ms: int = Field(
        default=1_000, gt=0, description="How often the consumer-lag metric is refreshed from the brokers."
    )
    kafka_timeout_ms: int = Field(
        default=10_000, gt=0, description="How long the admin API waits on a Kafka cluster (checking a topic, reading a group's lag)."
    )
    restart_initial_backoff_ms: int = Field(default=200, gt=0, description="Pause before restarting a consumer that failed.")
    restart_max_backoff_ms: int = Field(default=10_000, gt=0, description="Longest pause between restarts (the pause doubles up to it).")


@dataclass(frozen=True, slots=True)
class ServiceDefaults:
    """The node's defaults for what a service may declare, as the admin API shows them (the invoker's and the retry settings)."""

    retry_policy: RetryPolicy
    inactivity_timeout_ms: int
    abort_timeout_ms: int

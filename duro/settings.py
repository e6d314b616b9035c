"""Node settings (pydantic-settings): every flag has a `DURO_`-prefixed environment variable and a default.

Nested groups use `__` in environment names, e.g. `DURO_INGRESS__MAX_BODY_BYTES`.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from ingress.settings import IngressSettings, SubscriptionSettings
from partition_worker.settings import InvokerSettings, ProcessorSettings, SnapshotSettings
from wal.embedded import DEFAULT_MAX_CACHED_BYTES, DEFAULT_MAX_GROUP_COMMIT_DELAY_US, DEFAULT_MAX_SEGMENT_BYTES
from wal.embedded_files import MAX_SEGMENT_BYTES
from wal.kafka_settings import KafkaLogSettings
from wal.records import DEFAULT_RETRY_POLICY, OnMaxAttempts, RetryPolicy

_POLICY = DEFAULT_RETRY_POLICY


class RetrySettings(BaseModel):
    """The node's default retry policy, written into every invocation's Invoke record (defaults: `wal.records.RetryPolicy`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_interval_ms: int = Field(
        default=_POLICY.initial_interval_ms, gt=0, description="Delay before the first retry of a failed attempt."
    )
    factor: float = Field(default=_POLICY.factor, ge=1.0, description="Each retry waits this many times longer than the previous one.")
    max_interval_ms: int = Field(default=_POLICY.max_interval_ms, gt=0, description="Longest delay between retries.")
    max_attempts: int | None = Field(
        default=_POLICY.max_attempts, gt=0, description="Failed attempts before on_max_attempts applies; unset: retry for ever."
    )
    on_max_attempts: OnMaxAttempts = Field(
        default=_POLICY.on_max_attempts, description="pause (resume through the admin API) or kill (fail with the last error)."
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.initial_interval_ms, self.factor, self.max_interval_ms, self.max_attempts, self.on_max_attempts)


class ShutdownSettings(BaseModel):
    """The graceful phase after SIGTERM or SIGINT (a second signal skips what is left of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_ms: int = Field(
        default=20_000,
        gt=0,
        description="Longest graceful phase: refuse new requests, drain attempts, hand partitions over, answer waiting requests;"
        " then the node closes whatever is left. Keep Kubernetes' terminationGracePeriodSeconds above it (the Helm chart does).",
    )
    attempt_drain_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="How long running attempts get to end or suspend (their request streams are closed at once) before they are"
        " aborted; the partition's next leader runs an aborted attempt again.",
    )

    close_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="After the graceful phase or a fatal error: the longest closing the servers, the log and the state may"
        " take; past timeout_ms + close_timeout_ms the process ends itself with exit status 3.",
    )

    @model_validator(mode="after")
    def _drain_fits(self) -> ShutdownSettings:
        if self.attempt_drain_timeout_ms > self.timeout_ms:
            raise ValueError(
                f"shutdown.attempt_drain_timeout_ms ({self.attempt_drain_timeout_ms}) must not exceed shutdown.timeout_ms"
                f" ({self.timeout_ms}): the attempt drain is part of the graceful phase"
            )
        return self


class TracingSettings(BaseModel):
    """OpenTelemetry traces: spans of ingress requests, invocations and attempts, exported over OTLP/HTTP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL, e.g. http://jaeger:4318/v1/traces; unset: no tracing (and no cost).",
    )
    service_name: str = Field(default="duro", description="The service.name resource attribute of duro's spans.")
    export_delay_ms: int = Field(default=5_000, gt=0, description="Spans are exported in batches at least this often.")
    max_queue_spans: int = Field(default=2_048, gt=0, description="Spans waiting for export; more are dropped.")
    max_export_batch_spans: int = Field(default=512, gt=0, description="Spans per export request.")
    export_timeout_ms: int = Field(default=10_000, gt=0, description="Timeout of one export request, and of the flush at shutdown.")

    @model_validator(mode="after")
    def _batch_fits(self) -> TracingSettings:
        if self.max_export_batch_spans > self.max_queue_spans:
            raise ValueError(
                f"tracing.max_export_batch_spans ({self.max_export_batch_spans}) must not exceed tracing.max_queue_spans ({self.max_queue_spans})"
            )
        return self


class WorkerSettings(BaseModel):
    """The worker processes of a node with `workers > 1`: their start, restart and the links between them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_timeout_ms: int | None = Field(
        default=None, gt=0, description="Deprecated and ignored: a starting worker is bounded by start_stall_timeout_ms instead."
    )
    start_stall_timeout_ms: int = Field(
        default=120_000,
        gt=0,
        description="How long a starting worker may go without reporting progress (a start-up step done, records replayed)"
        " before the node declares it stuck and stops; a long replay that keeps applying is not stuck.",
    )
    data_dir_lock_wait_ms: int = Field(
        default=5_000,
        gt=0,
        description="How long a starting node waits for the last process of a node that just died on its data dir; then it refuses.",
    )
    restart_initial_backoff_ms: int = Field(default=100, gt=0, description="Pause before restarting a worker that a signal ended.")
    restart_max_backoff_ms: int = Field(
        default=5_000, gt=0, description="The pause doubles while a worker keeps dying soon after it started, up to this."
    )
    control_timeout_ms: int = Field(
        default=10_000, gt=0, description="A worker's wait for the node's shared values (registry, subscriptions) and their changes."
    )
    link_timeout_ms: int = Field(
        default=60_000,
        gt=0,
        description="The longest one request to another worker (an append to its partition, a query) waits for its answer.",
    )
    max_link_pending_requests: int = Field(
        default=10_000, gt=0, description="Requests one worker has waiting at another at once; further ones wait for room."
    )
    max_link_buffered_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Bytes written to another worker and not yet taken by it (a stopped or stuck worker); past it the link is"
        " dropped: requests on it fail as with a broken link, replies are asked again by their waiting requests.",
    )
    metrics_timeout_ms: int = Field(
        default=3_000,
        gt=0,
        description="How long the node's /metrics waits for each other worker's samples; one that has not answered by then is"
        " left out of that scrape (logged), so a stuck worker cannot fail a scrape (Prometheus' default scrape timeout is 10 s).",
    )


class DuroSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DURO_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Field(default=Path("./duro-data"), description="Where the log, the state and the registry live.")
    bind: str = Field(default="127.0.0.1", description="Address the ingress and admin servers listen on.")
    admin_bind: str | None = Field(
        default=None,
        description="Address the admin API listens on, if not --bind (e.g. 127.0.0.1 while the ingress is public); on Kafka"
        " the other nodes must reach it (replies travel between nodes over it).",
    )
    ingress_port: int = Field(default=8080, ge=0, le=65535, description="Port of the ingress (calls, sends, attach; Restate's 8080).")
    admin_port: int = Field(
        default=9070, ge=0, le=65535, description="Port of the admin API (deployments, invocations, SQL; Restate's 9070)."
    )
    partitions: int = Field(default=24, ge=1, le=65535, description="Fixed when the data dir is created.")
    node_id: int = Field(default=1, ge=1, description="This node's id; unique per cluster.")
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Worker processes of this node (embedded log), each running a share of the partitions with log files and"
        " a state store of its own. Fixed when the data dir is created; unset: the data dir's count, or for a new data dir the"
        " number of cores this process may use (at most the partition count). On Kafka one per node: run more nodes instead.",
    )
    node_id_from_hostname: bool = Field(
        default=False,
        description="Take the node id from the host name's trailing ordinal plus one ($HOSTNAME, else the system's host name):"
        " StatefulSet pod duro-0 is node 1, duro-2 is node 3. For Kubernetes; --node-id must then stay unset.",
    )
    log: Literal["embedded", "kafka"] = Field(
        default="embedded", description="The log backend: embedded (one node) or kafka (one or more nodes)."
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]; required with log=kafka."
    )
    kafka_topic: str = Field(default="duro.log", description="The log topic; its partitions are duro's partitions.")
    kafka_metadata_topic: str = Field(
        default="duro.metadata", description="Compacted topic holding the deployment registry and the node directory."
    )
    kafka_replication_factor: int = Field(default=1, ge=1, description="Replication factor of the topics duro creates.")
    kafka_session_timeout_ms: int = Field(default=6_000, gt=0, description="A node silent this long loses its partitions to the others.")
    kafka_connect_timeout_ms: int = Field(
        default=30_000, gt=0, description="At start-up, keep retrying an unreachable bootstrap server this long."
    )
    max_append_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Largest log append (one record with its framing); unset: the backend's own (embedded 32 MiB, Kafka 8 MiB)."
        " Request bodies, messages from deployments and subscribed records must fit one append with a 64 KiB allowance: a limit"
        " set above that stops start-up, a default above it is lowered to fit.",
    )
    kafka_append_timeout_ms: int = Field(
        default=KafkaLogSettings().append_timeout_ms,
        gt=0,
        description="How long one append to Kafka may wait for its acknowledgement (the producer retries meanwhile) before it fails.",
    )
    kafka_max_tail_ahead_bytes: int = Field(
        default=KafkaLogSettings().max_tail_ahead_bytes,
        gt=0,
        description="On Kafka, a partition's tail takes this node's appends at their acknowledgement; this many bytes of them"
        " (plus 64 per entry) it holds while it waits for the fetcher to bring other nodes' entries before them; beyond it they"
        " are left to the fetcher.",
    )
    advertised_host: str | None = Field(default=None, description="Host other nodes use to reach this one (default: --bind).")
    log_level: str = Field(default="info", description="Lowest level logged: debug, info, warning, error or critical.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text lines, or JSON lines naming node, partition and invocation id (for log collectors)."
    )
    truncate_corrupt_tail: bool = Field(
        default=False,
        description="At start-up, cut the embedded log at a damaged frame instead of refusing to start; every entry from"
        " there on is lost (logged). For one start by an operator who accepts the loss; leave it off otherwise.",
    )
    reserved_file_descriptors: int = Field(
        default=256,
        ge=64,
        description="File descriptors kept for the log, the state store (state_max_open_files of them), outgoing connections"
        " and the runtime; the ingress and admin connection caps are lowered at start-up to fit in the rest.",
    )
    state_max_open_files: int = Field(
        default=128, ge=16, description="Table files RocksDB keeps open at once (part of reserved_file_descriptors)."
    )
    min_free_disk_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Below this much free space on the data dir's disk, new invocations are refused (507) so that running"
        " ones, retries, attaches and snapshots still fit; they are accepted again once it is free.",
    )
    disk_check_interval_ms: int = Field(default=1_000, gt=0, description="How often the data dir's free space is sampled.")
    log_max_segment_bytes: int = Field(
        default=DEFAULT_MAX_SEGMENT_BYTES,
        gt=0,
        le=MAX_SEGMENT_BYTES,
        description="The embedded log starts a new segment file at this size; trimming deletes whole segments.",
    )
    log_max_cached_bytes: int = Field(
        default=DEFAULT_MAX_CACHED_BYTES,
        gt=0,
        description="The embedded log keeps its newest entries in memory up to this many bytes (plus 64 per entry), so that"
        " followers and tailers read them without the disk; it fills within minutes and stays there.",
    )
    log_max_group_commit_delay_us: int = Field(
        default=DEFAULT_MAX_GROUP_COMMIT_DELAY_US,
        ge=0,
        le=1_000_000,
        description="The embedded log's writer waits this long after the first append of a commit group before it writes and"
        " syncs the group, so that more appends share one sync; 0 commits as soon as the previous sync ended. Nothing"
        " is acknowledged before its sync either way: this trades up to this much latency per append for fewer syncs and"
        " writer-thread hand-overs (each worker process has its own log and its own groups).",
    )
    max_waiting_requests: int = Field(default=100_000, gt=0, description="Ingress requests waiting for replies at once.")
    gc_young_threshold_objects: int = Field(
        default=10_000,
        gt=0,
        description="Once the node serves, the garbage collector examines its youngest objects after this many more allocations"
        " than deallocations (Python's default is 700): most of a request's objects are freed by reference counting before a"
        " collection would look at them (since 0.2).",
    )
    metrics_sample_interval_ms: int = Field(
        default=10_000, gt=0, description="How often the sampled gauges (apply lag, timers pending, inbox lengths, RocksDB size) are read."
    )
    metrics_max_scan_rows: int | None = Field(
        default=None,
        gt=0,
        deprecated=True,
        description="Deprecated since 0.2 and ignored: timers pending and inbox lengths are exact counts kept by apply, nothing is"
        " scanned. Still accepted so that a config or environment that sets it starts; the node logs a warning.",
    )
    request_identity_private_key_pem_file: Path | None = Field(
        default=None,
        description="An Ed25519 private key in PEM (openssl genpkey -algorithm ed25519): every request to a deployment is signed"
        " with it (Restate's request identity v1), so endpoints configured with identity_keys accept duro. Unset: unsigned.",
    )
    request_identity_expiration_ms: int = Field(
        default=60_000, gt=0, description="Validity window of each request's identity token, on either side of its issuing time."
    )
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    invoker: InvokerSettings = Field(default_factory=InvokerSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    snapshots: SnapshotSettings = Field(default_factory=SnapshotSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)

    @model_validator(mode="after")
    def _advertised_ingress(self) -> DuroSettings:
        """/version reports this node's own ingress address unless `ingress.advertised_ingress_url` is set."""
        if "advertised_ingress_url" not in self.ingress.model_fields_set:
            object.__setattr__(self, "ingress", self.ingress.model_copy(update={"advertised_ingress_url": self.ingress_url + "/"}))
        return self

    @model_validator(mode="after")
    def _node_id_from_hostname(self) -> DuroSettings:
        if not self.node_id_from_hostname:
            return self
        if "node_id" in self.model_fields_set:
            raise ValueError(f"node_id ({self.node_id}) and node_id_from_hostname are both set; set one of them")
        object.__setattr__(self, "node_id", node_id_of_hostname(os.environ.get("HOSTNAME") or socket.gethostname()))
        return self

    @model_validator(mode="after")
    def _workers_on_the_embedded_log(self) -> DuroSettings:
        if self.workers is not None and self.workers > 1 and self.log != "embedded":
            raise ValueError(
                f"workers ({self.workers}) > 1 needs the embedded log; on Kafka run one node per worker instead (each a member of the group)"
            )
        if self.workers is not None and self.workers > self.partitions:
            raise ValueError(f"workers ({self.workers}) must not exceed partitions ({self.partitions}): each worker runs at least one")
        return self

    @model_validator(mode="after")
    def _state_files_fit_the_reserve(self) -> DuroSettings:
        if self.state_max_open_files + 64 > self.reserved_file_descriptors:
            raise ValueError(
                f"reserved_file_descriptors ({self.reserved_file_descriptors}) must leave at least 64 descriptors beyond"
                f" state_max_open_files ({self.state_max_open_files}) for the log, outgoing connections and the runtime"
            )
        return self

    @property
    def admin_url(self) -> str:
        return f"http://{self.advertised_host or self.bind}:{self.admin_port}"

    @property
    def ingress_url(self) -> str:
        return f"http://{self.advertised_host or self.bind}:{self.ingress_port}"


def node_id_of_hostname(hostname: str) -> int:
    """The node id of a StatefulSet pod: its ordinal (after the last '-') plus one; ValueError naming the host name otherwise."""
    ordinal = hostname.split(".", 1)[0].rsplit("-", 1)[-1]
    if "-" not in hostname or not ordinal.isdigit():
        raise ValueError(f"node_id_from_hostname: host name {hostname!r} does not end in -ORDINAL (like a StatefulSet pod's, duro-0)")
    return int(ordinal) + 1


DEPRECATED_SETTINGS = {
    "metrics_max_scan_rows": "timers pending and inbox lengths are exact counts kept by apply since 0.2; nothing is scanned",
    "worker.start_timeout_ms": "a starting worker is now stopped only when it makes no progress for"
    " worker.start_stall_timeout_ms (a long replay that keeps applying is not stuck)",
}
"""Settings still accepted (a config that sets one still starts) but ignored, with why; a nested one as `group.name`."""


def deprecated_settings_in_use(settings: DuroSettings) -> list[str]:
    """One line per deprecated setting that `settings` sets, naming it and why it is ignored (for a warning at start)."""
    return [f"setting {name} is deprecated and ignored: {why}" for name, why in DEPRECATED_SETTINGS.items() if _is_set(settings, name)]


def _is_set(settings: BaseModel, dotted_name: str) -> bool:
    group, _, rest = dotted_name.partition(".")
    if group not in settings.model_fields_set:
        return False
    return not rest or _is_set(getattr(settings, group), rest)


class SettingsFileError(Exception):
    """The config file is missing or is not valid TOML."""


def load_settings(config_file: Path | None, overrides: dict[str, Any]) -> DuroSettings:
    """Settings from flags (`overrides`), then `DURO_*` variables, then the TOML config file, then defaults."""
    if config_file is None:
        return DuroSettings(**overrides)
    if not config_file.is_file():
        raise SettingsFileError(f"config file {config_file} does not exist")
    try:
        tomllib.loads(config_file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"config file {config_file} is not valid TOML: {exc}") from exc

    class FileSettings(DuroSettings):
        model_config = SettingsConfigDict(**{**DuroSettings.model_config, "toml_file": config_file})

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    return FileSettings(**overrides)

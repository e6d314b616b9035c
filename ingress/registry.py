"""The registry of deployments and the services they expose, with versioning and persistence.

A deployment is an immutable version of some services behind one URI.
Registering a new deployment that exposes service S makes it S's latest
revision (revision + 1): new invocations of S go there, while invocations
already pinned to an older deployment keep running on it, which stays
registered. Re-registering a URI that is already registered keeps its id:
identical → unchanged; compatible changes (handlers added, options changed)
are applied in place; incompatible ones (a handler or service removed, a
service type changed) need `force`. A service type change against another
deployment's revision needs `breaking` (or `force`).

The whole registry is persisted through a `RegistryStore` as one JSON
document; a change is visible only after the store has saved it, so a failed
save leaves the registry as it was.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import TypeAdapter

from ingress.errors import ApiError, BadRequest, Conflict, NotFound
from ingress.schema import DiscoveredEndpoint, HandlerInfo, ServiceInfo
from ingress.schema import RetryPolicy as DeclaredRetryPolicy
from protocol.retention import InvocationRetention, RetentionPolicy
from wal.records import HandlerKind, OnMaxAttempts, RetryPolicy, ServiceType

REGISTRY_FILE = "registry.json"  # the data dir file of a node on the embedded log that holds its deployment registry

T = TypeVar("T")
SourceT = TypeVar("SourceT")
DerivedT = TypeVar("DerivedT")

MAX_DERIVED_CACHED = 4_096
"""Values a `DerivedCache` keeps; past it, it starts afresh (a registry with that many handlers or deployments in use)."""


class DerivedCache(Generic[SourceT, DerivedT]):
    """Values derived from the registry's objects, made once per object instead of once per request.

    The registry replaces a deployment or a resolved handler when it changes
    and never changes one in place, so an entry is used while `get` is given
    the very object it was made from; another object under the same key makes
    it again. At most `MAX_DERIVED_CACHED` entries are kept.
    """

    def __init__(self, derive: Callable[[SourceT], DerivedT]) -> None:
        self._derive = derive
        self._entries: dict[Any, tuple[SourceT, DerivedT]] = {}

    def get(self, key: Any, source: SourceT) -> DerivedT:
        entry = self._entries.get(key)
        if entry is None or entry[0] is not source:
            if len(self._entries) >= MAX_DERIVED_CACHED:
                self._entries.clear()
            entry = self._entries[key] = (source, self._derive(source))
        return entry[1]


REGISTRY_FORMAT_VERSION = 1
DEPLOYMENT_ID_PREFIX = "dp_1"
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ULID_BASE62_CHARS = 22


class RegistryError(Exception):
    """A registry operation that cannot be done as asked; `kind` is the API error it becomes (ingress/errors.py maps it to HTTP)."""

    kind: ClassVar[type[ApiError]] = BadRequest

    def __init__(self, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.restate_code = restate_code


class RegistryConflict(RegistryError):
    """The change conflicts with what is registered (breaking change, type change, removal of a live deployment)."""

    kind = Conflict


class DeploymentNotFound(RegistryError):
    kind = NotFound


class ServiceNotFound(RegistryError):
    kind = NotFound


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """What `PATCH /services/{name}` changes; None leaves a setting as it is. Durations in ms."""

    public: bool | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    retry_policy: DeclaredRetryPolicy | None = None  # duro: Restate 1.7's PATCH has no retry policy

    def apply_to(self, service: ServiceInfo) -> ServiceInfo:
        options = service.options
        changed: dict[str, Any] = {
            name: value
            for name, value in (
                ("idempotency_retention_ms", self.idempotency_retention_ms),
                ("journal_retention_ms", self.journal_retention_ms),
                ("inactivity_timeout_ms", self.inactivity_timeout_ms),
                ("abort_timeout_ms", self.abort_timeout_ms),
                ("retry_policy", self.retry_policy),
            )
            if value is not None
        }
        if self.public is not None:
            changed["ingress_private"] = not self.public
        handlers = service.handlers
        if self.workflow_completion_retention_ms is not None:
            handlers = {
                name: replace(h, options=replace(h.options, workflow_completion_retention_ms=self.workflow_completion_retention_ms))
                if h.kind is HandlerKind.WORKFLOW
                else h
                for name, h in handlers.items()
            }
        return replace(service, options=replace(options, **changed), handlers=handlers)


class RegisterOutcome(str, enum.Enum):
    CREATED = "created"  # a new deployment
    UNCHANGED = "unchanged"  # the URI was registered with exactly this content
    UPDATED = "updated"  # the URI was registered; compatible changes applied in place
    OVERWRITTEN = "overwritten"  # the URI was registered; replaced with force


@dataclass(frozen=True, slots=True)
class Deployment:
    """One registered endpoint: how to reach it and the services (with revisions) it exposes."""

    id: str
    uri: str
    use_http_11: bool
    protocol_mode: str  # "BIDI_STREAM" | "REQUEST_RESPONSE"
    min_protocol_version: int
    max_protocol_version: int
    manifest_version: int
    sdk_version: str | None
    created_at_ms: int
    services: dict[str, ServiceInfo]
    service_revisions: dict[str, int]
    additional_headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceRevision:
    """The latest revision of a service and the deployment that exposes it."""

    info: ServiceInfo
    revision: int
    deployment_id: str

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def service_type(self) -> ServiceType:
        return self.info.service_type

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        return self.info.handlers


@dataclass(frozen=True, slots=True)
class ResolvedHandler:
    """Everything the ingress needs about a handler of a service's latest revision."""

    service: ServiceInfo
    handler: HandlerInfo
    deployment_id: str
    public: bool

    @property
    def service_type(self) -> ServiceType:
        return self.service.service_type

    @property
    def kind(self) -> HandlerKind | None:
        return self.handler.kind

    @property
    def idempotency_retention_ms(self) -> int | None:
        """Declared idempotency retention (handler, else service); None: the runtime default."""
        return _first(self.handler.options.idempotency_retention_ms, self.service.options.idempotency_retention_ms)

    @property
    def workflow_completion_retention_ms(self) -> int | None:
        return self.handler.options.workflow_completion_retention_ms

    @property
    def journal_retention_ms(self) -> int | None:
        return _first(self.handler.options.journal_retention_ms, self.service.options.journal_retention_ms)

    @property
    def is_workflow_run(self) -> bool:
        return self.service.service_type is ServiceType.WORKFLOW and self.handler.kind is HandlerKind.WORKFLOW

    def retention(self, defaults: RetentionPolicy, has_idempotency_key: bool) -> InvocationRetention:
        """How long an invocation of this handler keeps its outcome and its journal once completed.

        The one rule for invocations from the ingress and from handlers' calls
        (the invoker writes its result into the Call's record): Restate's, in
        `protocol.retention`, over what the handler (else its service)
        declares, else the node's `defaults`.
        """
        policy = defaults.resolve(self.journal_retention_ms, self.idempotency_retention_ms, self.workflow_completion_retention_ms)
        return policy.for_invocation(is_workflow_run=self.is_workflow_run, has_idempotency_key=has_idempotency_key)

    def retry_policy(self, node_default: RetryPolicy) -> RetryPolicy:
        """The retry policy an invocation of this handler gets, written into its Invoke record.

        Field by field, as Restate merges them: what the handler declares, else
        what its service declares, else the node's default.
        """
        handler = self.handler.options.retry_policy
        service = self.service.options.retry_policy
        on_max = _first(handler.on_max_attempts, service.on_max_attempts)
        return RetryPolicy(
            initial_interval_ms=_declared_or(node_default.initial_interval_ms, handler.initial_interval_ms, service.initial_interval_ms),
            factor=_declared_or(node_default.factor, handler.exponentiation_factor, service.exponentiation_factor),
            max_interval_ms=_declared_or(node_default.max_interval_ms, handler.max_interval_ms, service.max_interval_ms),
            max_attempts=_first(handler.max_attempts, service.max_attempts, node_default.max_attempts),
            on_max_attempts=OnMaxAttempts(on_max.lower()) if on_max is not None else node_default.on_max_attempts,
        )


@dataclass(frozen=True, slots=True)
class RegisterResult:
    outcome: RegisterOutcome
    deployment: Deployment


class RegistryStore(Protocol):
    """Where the registry document lives. Small on purpose: a Kafka compacted topic can implement it."""

    async def load(self) -> bytes | None:
        """The last saved document, or None if nothing was saved yet."""
        ...

    async def save(self, document: bytes) -> None:
        """Replace the document durably; return only once it would survive a crash."""
        ...


class SharedRegistryStore:
    """The registry document kept under one key of a shared key-value store (the cluster's metadata topic).

    `kv` needs `values: dict[str, bytes]` (the latest value per key) and
    `async put(key, value)`; changes by other nodes reach the registry through
    `Registry.install_document`.
    """

    KEY = "registry"

    def __init__(self, kv: Any) -> None:
        self._kv = kv

    async def load(self) -> bytes | None:
        return self._kv.values.get(self.KEY)

    async def save(self, document: bytes) -> None:
        await self._kv.put(self.KEY, document)


def _private_opener(path: str, flags: int) -> int:
    """Creates the registry file readable by duro's user alone: it holds deployments' headers (bearer tokens, say)."""
    return os.open(path, flags, 0o600)


class FileRegistryStore:
    """Keeps the registry document in one file, replaced atomically (temp file, fsync, rename, fsync dir)."""

    def __init__(self, data_dir: str | os.PathLike[str], file_name: str = REGISTRY_FILE) -> None:
        self.path = Path(data_dir) / file_name

    async def load(self) -> bytes | None:
        return await asyncio.to_thread(self._read)

    async def save(self, document: bytes) -> None:
        await asyncio.to_thread(self._write, document)

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, document: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(temp, "wb", opener=_private_opener) as file:
                file.write(document)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
        except OSError:
            temp.unlink(missing_ok=True)  # a full disk must not keep half a document
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


_DEPLOYMENTS_ADAPTER: TypeAdapter[list[Deployment]] = TypeAdapter(list[Deployment])


def encode_registry(deployments: Iterable[Deployment]) -> bytes:
    """The registry document: `{"format_version": 1, "deployments": [...]}` as JSON bytes."""
    body = _DEPLOYMENTS_ADAPTER.dump_python(list(deployments), mode="json")
    return json.dumps({"format_version": REGISTRY_FORMAT_VERSION, "deployments": body}, indent=1).encode()


def decode_registry(document: bytes) -> list[Deployment]:
    """The deployments of a registry document; raises RegistryError naming what is wrong."""
    try:
        parsed = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RegistryError(f"registry document is not JSON: {error}") from None
    version = parsed.get("format_version") if isinstance(parsed, dict) else None
    if version != REGISTRY_FORMAT_VERSION:
        raise RegistryError(f"registry document has format_version {version!r}; expected {REGISTRY_FORMAT_VERSION}")
    try:
        return _DEPLOYMENTS_ADAPTER.validate_python(parsed.get("deployments"))
    except ValueError as error:
        raise RegistryError(f"registry document is invalid: {error}") from None


def new_deployment_id() -> str:
    """A fresh id in Restate's form: `dp_1` + 22 base62 characters of a random 128-bit number."""
    return resource_id(DEPLOYMENT_ID_PREFIX, secrets.randbits(128))


def resource_id(prefix: str, value: int) -> str:
    """Restate's form of a 128-bit resource id (deployments, subscriptions): `prefix` + 22 base62 characters of `value`."""
    assert 0 <= value < 1 << 128, "resource ids are 128-bit numbers"
    digits = []
    for _ in range(_ULID_BASE62_CHARS):
        value, remainder = divmod(value, 62)
        digits.append(_BASE62[remainder])
    return prefix + "".join(reversed(digits))


def parse_resource_id(prefix: str, text: str) -> int:
    """The 128-bit number of a resource id written by `resource_id`; ValueError naming the expected form."""
    body = text[len(prefix) :] if text.startswith(prefix) else None
    if body is None or len(body) != _ULID_BASE62_CHARS or any(char not in _BASE62 for char in body):
        raise ValueError(f"expected '{prefix}' followed by {_ULID_BASE62_CHARS} base62 characters [0-9a-zA-Z], got {text!r}")
    value = 0
    for char in body:
        value = value * 62 + _BASE62.index(char)
    if value >= 1 << 128:
        raise ValueError(f"{text!r} is out of range for a 128-bit id")
    return value


def normalize_uri(uri: str) -> str:
    """The URI as deployments are compared and stored: without trailing slashes."""
    return uri.rstrip("/")


class Registry:
    """Deployments and the latest revision of every service; lookups are synchronous and cheap.

    Mutations (`register`, `remove_deployment`) are serialized by a lock and
    persisted through the store before they become visible. `version` grows by
    one on every visible change.
    """

    def __init__(self, store: RegistryStore | None = None, clock_ms: Callable[[], int] | None = None) -> None:
        self._store = store
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = asyncio.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._latest: dict[str, ServiceRevision] = {}
        self._resolved: dict[str, dict[str, ResolvedHandler]] = {}
        self.version = 0

    @classmethod
    async def open(cls, store: RegistryStore) -> Registry:
        """A registry with the content `store` holds (empty if it holds nothing yet)."""
        registry = cls(store)
        await registry.load()
        return registry

    async def load(self) -> None:
        """Read the store's document (if any) and make it the registry's content."""
        if self._store is None:
            return
        document = await self._store.load()
        if document is not None:
            self._install({d.id: d for d in decode_registry(document)})

    def install_document(self, document: bytes) -> None:
        """Adopt a registry document another node wrote (shared stores call this on every change)."""
        self._install({d.id: d for d in decode_registry(document)})

    # ------------------------------------------------------------ lookups

    def deployments(self) -> list[Deployment]:
        """Every deployment, oldest first."""
        return sorted(self._deployments.values(), key=lambda d: (d.created_at_ms, d.id))

    def deployment(self, deployment_id: str) -> Deployment | None:
        return self._deployments.get(deployment_id)

    def service(self, name: str) -> ServiceRevision | None:
        """The latest revision of service `name`, or None if no deployment exposes it."""
        return self._latest.get(name)

    def services(self) -> list[ServiceRevision]:
        return [self._latest[name] for name in sorted(self._latest)]

    def latest_deployment_for(self, service: str) -> Deployment | None:
        revision = self._latest.get(service)
        return None if revision is None else self._deployments[revision.deployment_id]

    def handler_target(self, service: str, handler: str) -> tuple[ServiceType, HandlerKind | None] | None:
        """Service type and handler kind of the latest revision's handler, or None if unknown."""
        resolved = self.resolve(service, handler)
        return None if resolved is None else (resolved.service_type, resolved.kind)

    def resolve(self, service: str, handler: str) -> ResolvedHandler | None:
        handlers = self._resolved.get(service)
        return None if handlers is None else handlers.get(handler)

    def deployment_by_uri(self, uri: str) -> Deployment | None:
        """The most recently created deployment registered at `uri`."""
        wanted = normalize_uri(uri)
        matches = [d for d in self._deployments.values() if d.uri == wanted]
        return max(matches, key=lambda d: d.created_at_ms) if matches else None

    # ------------------------------------------------------------ changes

    async def register(
        self,
        endpoint: DiscoveredEndpoint,
        *,
        additional_headers: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
    ) -> RegisterResult:
        """Register the endpoint discovered at `endpoint.uri`; see the module docstring for the rules.

        Raises RegistryConflict (nothing changed) when the change needs
        `force` or `breaking`. With `dry_run` the result is computed but not
        applied.
        """
        async with self._lock:
            existing = self.deployment_by_uri(endpoint.uri)
            if not (force or breaking):
                self._check_type_changes(endpoint, existing)
            if existing is not None and not force:
                _check_compatible(existing, endpoint)
            candidate = self._candidate(existing, endpoint, additional_headers or {}, metadata or {}, force)
            if existing is not None and not force and _same_content(existing, candidate):
                return RegisterResult(RegisterOutcome.UNCHANGED, existing)
            outcome = _outcome(existing, force)
            if not dry_run:
                await self._commit({**self._deployments, candidate.id: candidate})
            return RegisterResult(outcome, candidate)

    async def remove_deployment(self, deployment_id: str, force: bool = False) -> Deployment:
        """Forget a deployment. Without `force`, refuse if it serves the latest revision of a service."""
        async with self._lock:
            deployment = self._deployments.get(deployment_id)
            if deployment is None:
                raise DeploymentNotFound(f"The requested deployment '{deployment_id}' does not exist")
            serving = [name for name, rev in self._latest.items() if rev.deployment_id == deployment_id]
            if serving and not force:
                raise RegistryConflict(
                    f"deployment '{deployment_id}' serves the latest revision of {', '.join(sorted(serving))};"
                    " register a newer deployment of these services first, or remove it with force=true"
                    " (in-flight invocations pinned to it will then fail)"
                )
            remaining = {k: v for k, v in self._deployments.items() if k != deployment_id}
            await self._commit(remaining)
            return deployment

    async def modify_service(self, name: str, change: ServiceChange) -> ServiceRevision:
        """Change a service's options at runtime (`PATCH /services/{name}`), persisted like a registration.

        The change applies to the service's latest revision in place (same
        revision number, as Restate does); registering the deployment again
        replaces it with what the endpoint declares.
        """
        async with self._lock:
            latest = self._latest.get(name)
            if latest is None:
                raise ServiceNotFound(f"The requested service '{name}' does not exist")
            if change.workflow_completion_retention_ms is not None and latest.service_type is not ServiceType.WORKFLOW:
                raise RegistryError(
                    f"The request field 'workflow_completion_retention' is invalid. Reason: service '{name}' is a"
                    f" {latest.service_type.value}; it can be modified only for workflow services"
                )
            deployment = self._deployments[latest.deployment_id]
            info = change.apply_to(latest.info)
            await self._commit({**self._deployments, deployment.id: replace(deployment, services={**deployment.services, name: info})})
            return ServiceRevision(info, latest.revision, deployment.id)

    async def update_deployment(
        self,
        deployment_id: str,
        *,
        endpoint: DiscoveredEndpoint | None,
        additional_headers: dict[str, str] | None,
        overwrite: bool,
        dry_run: bool,
    ) -> Deployment:
        """Change where a deployment is reached (`PATCH /deployments/{id}`): its URI (re-discovered), HTTP version or headers.

        The deployment keeps its id and its services' revisions. A new address
        must expose the same services unless `overwrite`, which also adopts the
        services' new definitions.
        """
        async with self._lock:
            existing = self._deployments.get(deployment_id)
            if existing is None:
                raise DeploymentNotFound(f"The requested deployment '{deployment_id}' does not exist")
            updated = existing
            if endpoint is not None:
                discovered = {s.name: s for s in endpoint.services}
                if not overwrite and set(discovered) != set(existing.services):
                    raise RegistryConflict(
                        f"the endpoint at {endpoint.uri} exposes {sorted(discovered)}, deployment '{deployment_id}' exposes"
                        f" {sorted(existing.services)}; update with overwrite=true to adopt the new services"
                    )
                updated = replace(
                    existing,
                    uri=normalize_uri(endpoint.uri),
                    use_http_11=endpoint.use_http_11,
                    protocol_mode=endpoint.protocol_mode,
                    min_protocol_version=endpoint.min_protocol_version,
                    max_protocol_version=endpoint.max_protocol_version,
                    sdk_version=endpoint.sdk_version,
                    services=discovered if overwrite else existing.services,
                    service_revisions={n: existing.service_revisions.get(n, 1) for n in (discovered if overwrite else existing.services)},
                )
            if additional_headers is not None:
                updated = replace(updated, additional_headers=dict(additional_headers))
            if not dry_run:
                await self._commit({**self._deployments, deployment_id: updated})
            return updated

    # ------------------------------------------------------------ internals

    def _check_type_changes(self, endpoint: DiscoveredEndpoint, existing: Deployment | None) -> None:
        """RegistryConflict if a service changes type against its latest revision in another deployment."""
        for service in endpoint.services:
            latest = self._latest.get(service.name)
            if latest is None or latest.service_type is service.service_type:
                continue
            if existing is not None and latest.deployment_id == existing.id:
                continue  # same deployment: the compatibility check reports it with a better hint
            raise RegistryConflict(
                f"detected a new service revision for '{service.name}' changing the service type from"
                f" {latest.service_type.value} (revision {latest.revision}, deployment {latest.deployment_id})"
                f" to {service.service_type.value}. Service type cannot be changed across revisions;"
                " register with breaking=true to allow it",
                restate_code="META0006",
            )

    def _candidate(
        self,
        existing: Deployment | None,
        endpoint: DiscoveredEndpoint,
        additional_headers: dict[str, str],
        metadata: dict[str, str],
        force: bool = False,
    ) -> Deployment:
        services = {s.name: s for s in endpoint.services}
        revisions = {name: self._next_revision(name, existing, service, force) for name, service in services.items()}
        return Deployment(
            id=existing.id if existing is not None else new_deployment_id(),
            uri=normalize_uri(endpoint.uri),
            use_http_11=endpoint.use_http_11,
            protocol_mode=endpoint.protocol_mode,
            min_protocol_version=endpoint.min_protocol_version,
            max_protocol_version=endpoint.max_protocol_version,
            manifest_version=endpoint.manifest_version,
            sdk_version=endpoint.sdk_version,
            created_at_ms=existing.created_at_ms if existing is not None else self._clock_ms(),
            services=services,
            service_revisions=revisions,
            additional_headers=dict(additional_headers),
            metadata=dict(metadata),
        )

    def _next_revision(self, name: str, existing: Deployment | None, service: ServiceInfo, force: bool = False) -> int:
        """Keep the revision of an unchanged service; a forced re-registration always makes a new one (as Restate does)."""
        if existing is not None and not force and existing.services.get(name) == service:
            return existing.service_revisions[name]
        latest = self._latest.get(name)
        return 1 if latest is None else latest.revision + 1

    async def _commit(self, deployments: dict[str, Deployment]) -> None:
        if self._store is not None:
            await self._store.save(encode_registry(sorted(deployments.values(), key=lambda d: d.id)))
        self._install(deployments)

    def _install(self, deployments: dict[str, Deployment]) -> None:
        latest: dict[str, ServiceRevision] = {}
        for deployment in sorted(deployments.values(), key=lambda d: (d.created_at_ms, d.id)):
            for name, service in deployment.services.items():
                revision = deployment.service_revisions.get(name, 1)
                current = latest.get(name)
                if current is None or revision >= current.revision:
                    latest[name] = ServiceRevision(service, revision, deployment.id)
        self._deployments = deployments
        self._latest = latest
        self._resolved = {name: _resolve_handlers(rev) for name, rev in latest.items()}
        self.version += 1


def _resolve_handlers(revision: ServiceRevision) -> dict[str, ResolvedHandler]:
    service = revision.info
    return {
        name: ResolvedHandler(service, handler, revision.deployment_id, service.handler_public(handler))
        for name, handler in service.handlers.items()
    }


def _check_compatible(existing: Deployment, endpoint: DiscoveredEndpoint) -> None:
    problems = _incompatibilities(existing, {s.name: s for s in endpoint.services})
    if problems:
        raise RegistryConflict(
            f"deployment '{existing.id}' is already registered at {existing.uri} and the endpoint now differs"
            f" incompatibly: {'; '.join(problems)}. Re-register with force=true to overwrite it"
            " (in-flight invocations pinned to it may then fail), or deploy the new version at a new URI"
        )


def _incompatibilities(existing: Deployment, proposed: dict[str, ServiceInfo]) -> list[str]:
    problems = []
    for name, old in existing.services.items():
        new = proposed.get(name)
        if new is None:
            problems.append(f"service '{name}' was removed")
            continue
        if new.service_type is not old.service_type:
            problems.append(f"service '{name}' changed type from {old.service_type.value} to {new.service_type.value}")
        removed = [h for h in old.handlers if h not in new.handlers]
        problems += [f"handler '{name}/{h}' was removed" for h in removed]
        changed = [h for h, info in old.handlers.items() if h in new.handlers and new.handlers[h].kind is not info.kind]
        problems += [f"handler '{name}/{h}' changed kind" for h in changed]
    return problems


def _same_content(existing: Deployment, candidate: Deployment) -> bool:
    return replace(candidate, created_at_ms=existing.created_at_ms) == existing


def _outcome(existing: Deployment | None, force: bool) -> RegisterOutcome:
    if existing is None:
        return RegisterOutcome.CREATED
    return RegisterOutcome.OVERWRITTEN if force else RegisterOutcome.UPDATED


def _declared_or(default: T, *declared: T | None) -> T:
    """The first declared value, else `default`."""
    chosen = _first(*declared)
    return default if chosen is None else chosen


def _first(*values: T | None) -> T | None:
    """The first value that is set."""
    for value in values:
        if value is not None:
            return value
    return None

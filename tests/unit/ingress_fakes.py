"""Test doubles for the ingress unit tests: a scripted partition leader over a MemoryLog, and a small registry.

`FakePartitions` tails every partition of a `MemoryLog`, decodes what the
ingress appended and answers on the `ReplyBus` the way a partition leader
would (SUBMITTED, OUTCOME, NOT_READY, NOT_FOUND, CONFLICT, ACK). It is a
stand-in for the partition worker, which has its own tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from ingress.registry import Registry
from ingress.schema import DiscoveredEndpoint, services_from_manifest
from protocol.manifest import EndpointManifest
from wal.memory import MemoryLog
from wal.records import (
    Attach,
    Cancel,
    CompletePromise,
    Failure,
    IngressSink,
    Invoke,
    Kill,
    Outcome,
    PatchState,
    Purge,
    Record,
    Resume,
    Signal,
    decode_record,
)
from wal.replies import Reply, ReplyBus, ReplyKind

Responder = Callable[[Invoke], Outcome | None]


@dataclass
class FakeInvocation:
    invoke: Invoke
    outcome: Outcome | None = None
    expires_at_ms: int | None = None
    waiters: list[IngressSink] = field(default_factory=list)


class FakePartitions:
    """Applies ingress records from every partition and replies; `responder` decides which invocations finish at once."""

    def __init__(self, log: MemoryLog, bus: ReplyBus, responder: Responder) -> None:
        self.log = log
        self.bus = bus
        self.responder = responder
        self.records: list[tuple[int, Record]] = []
        self.invocations: dict[str, FakeInvocation] = {}
        self.applied = asyncio.Event()
        self.completed_promises: set[tuple[str, str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [asyncio.create_task(self._tail(p)) for p in range(self.log.partition_count)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def bodies(self, kind: type) -> list[Any]:
        return [record.body for _, record in self.records if isinstance(record.body, kind)]

    async def settled(self, timeout_s: float = 5.0) -> None:
        """Wait until every record appended so far was applied (the ingress answers plain sends before that)."""
        async with asyncio.timeout(timeout_s):
            while True:
                appended = sum([await self.log.end_offset(p) for p in range(self.log.partition_count)])
                if len(self.records) >= appended:
                    return
                self.applied.clear()
                await self.applied.wait()

    def complete(self, invocation_id: str, outcome: Outcome) -> None:
        invocation = self.invocations[invocation_id]
        invocation.outcome = outcome
        invocation.expires_at_ms = time.time_ns() // 1_000_000 + invocation.invoke.completion_retention_ms
        for sink in invocation.waiters:
            self._reply(sink, ReplyKind.OUTCOME, invocation)
        invocation.waiters.clear()

    async def _tail(self, partition: int) -> None:
        async for batch in self.log.tail(partition, 0):
            for _, entry in batch:
                record = decode_record(entry)
                self.records.append((partition, record))
                self._apply(record.body)
                self.applied.set()

    def _reply(self, sink: IngressSink, kind: ReplyKind, invocation: FakeInvocation | None, invocation_id: str = "", **extra: Any) -> None:
        if invocation is not None:
            invocation_id = invocation.invoke.invocation_id
            if kind is ReplyKind.OUTCOME:
                extra = {"outcome": invocation.outcome, "completion_expires_at_ms": invocation.expires_at_ms, **extra}
        self.bus.deliver(sink, Reply(kind, invocation_id, **extra))

    def _apply(self, body: Any) -> None:
        handler = {
            Invoke: self._invoke,
            Attach: self._attach,
            Cancel: self._terminate,
            Kill: self._terminate,
            Purge: self._purge,
            Resume: self._resume,
            Signal: lambda body: None,
            PatchState: self._patch_state,
            CompletePromise: self._complete_promise,
        }[type(body)]
        handler(body)

    def _patch_state(self, patch: PatchState) -> None:
        if patch.reply_to is not None:
            self.bus.deliver(patch.reply_to, Reply(ReplyKind.DONE, ""))

    def _complete_promise(self, body: CompletePromise) -> None:
        """Promises complete once: the second completion of the same one hears CONFLICT."""
        name = (body.service, body.key, body.promise)
        kind = ReplyKind.CONFLICT if name in self.completed_promises else ReplyKind.DONE
        self.completed_promises.add(name)
        if body.reply_to is not None:
            self.bus.deliver(body.reply_to, Reply(kind, "", message="already completed" if kind is ReplyKind.CONFLICT else ""))

    def _invoke(self, invoke: Invoke) -> None:
        existing = self.invocations.get(invoke.invocation_id)
        if existing is not None:
            self._duplicate(existing, invoke)
            return
        invocation = self.invocations[invoke.invocation_id] = FakeInvocation(invoke)
        if invoke.submit_sink is not None:
            self._reply(invoke.submit_sink, ReplyKind.SUBMITTED, invocation, previously_accepted=False)
        if invoke.response_sink is not None:
            assert isinstance(invoke.response_sink, IngressSink)
            invocation.waiters.append(invoke.response_sink)
        outcome = self.responder(invoke)
        if outcome is not None:
            self.complete(invoke.invocation_id, outcome)

    def _duplicate(self, existing: FakeInvocation, invoke: Invoke) -> None:
        if invoke.submit_sink is not None:
            self._reply(invoke.submit_sink, ReplyKind.SUBMITTED, existing, previously_accepted=True)
            return
        sink = invoke.response_sink
        assert isinstance(sink, IngressSink)
        if invoke.target.is_workflow_run:
            self._reply(sink, ReplyKind.CONFLICT, existing, message="the workflow method was already invoked")
        elif existing.outcome is not None:
            self._reply(sink, ReplyKind.OUTCOME, existing)
        else:
            existing.waiters.append(sink)

    def _attach(self, attach: Attach) -> None:
        sink = attach.sink
        assert isinstance(sink, IngressSink)
        invocation = self.invocations.get(attach.invocation_id)
        if invocation is None:
            self._reply(sink, ReplyKind.NOT_FOUND, None, attach.invocation_id)
        elif invocation.outcome is not None:
            self._reply(sink, ReplyKind.OUTCOME, invocation)
        elif not attach.block:
            self._reply(sink, ReplyKind.NOT_READY, invocation)
        else:
            invocation.waiters.append(sink)

    def _terminate(self, command: Cancel | Kill) -> None:
        invocation = self.invocations.get(command.invocation_id)
        if command.reply_to is None:
            return
        if invocation is None:
            self._reply(command.reply_to, ReplyKind.NOT_FOUND, None, command.invocation_id)
        elif invocation.outcome is not None:
            self._reply(command.reply_to, ReplyKind.CONFLICT, invocation)
        else:
            word = "canceled" if isinstance(command, Cancel) else "killed"
            self._reply(command.reply_to, ReplyKind.ACK, invocation)
            self.complete(command.invocation_id, Outcome(failure=Failure(409, word)))

    def _purge(self, purge: Purge) -> None:
        invocation = self.invocations.get(purge.invocation_id)
        assert purge.reply_to is not None
        if invocation is None:
            self._reply(purge.reply_to, ReplyKind.NOT_FOUND, None, purge.invocation_id)
        elif invocation.outcome is None:
            self._reply(purge.reply_to, ReplyKind.CONFLICT, invocation)
        else:
            del self.invocations[purge.invocation_id]
            self._reply(purge.reply_to, ReplyKind.ACK, invocation)

    def _resume(self, resume: Resume) -> None:
        invocation = self.invocations.get(resume.invocation_id)
        assert resume.reply_to is not None
        if invocation is None:
            self._reply(resume.reply_to, ReplyKind.NOT_FOUND, None, resume.invocation_id)
        elif invocation.outcome is not None:
            self._reply(resume.reply_to, ReplyKind.CONFLICT, invocation)
        else:
            self._reply(resume.reply_to, ReplyKind.ACK, invocation)


TEST_MANIFEST: dict[str, Any] = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "Greeter",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "greet",
                    "input": {"required": False, "contentType": "application/json", "jsonSchema": {"type": "string"}},
                    "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
                },
                {"name": "echo"},
                {"name": "noinput", "input": {}, "output": {"contentType": "text/plain", "setContentTypeIfEmpty": True}},
                {"name": "fail", "input": {}},
                {"name": "slow", "input": {}},
                {"name": "hidden", "input": {}, "ingressPrivate": True},
                {"name": "needsbody", "input": {"required": True, "contentType": "text/plain"}},
            ],
        },
        {
            "name": "Counter",
            "ty": "VIRTUAL_OBJECT",
            "journalRetention": 60000,
            "handlers": [
                {"name": "add", "ty": "EXCLUSIVE", "input": {"contentType": "application/json", "jsonSchema": {"type": "integer"}}},
                {"name": "get", "ty": "SHARED", "input": {}},
            ],
        },
        {
            "name": "Signup",
            "ty": "WORKFLOW",
            "handlers": [
                {"name": "run", "ty": "WORKFLOW", "input": {}, "workflowCompletionRetention": 5000},
                {"name": "status", "ty": "SHARED", "input": {}},
            ],
        },
    ],
}


def endpoint_from_manifest(
    manifest: dict[str, Any], uri: str = "http://svc:9080", sdk_version: str | None = "test/1.0"
) -> DiscoveredEndpoint:
    parsed = EndpointManifest.model_validate(manifest)
    return DiscoveredEndpoint(
        uri=uri,
        use_http_11=False,
        protocol_mode=parsed.protocol_mode.value,
        min_protocol_version=parsed.min_protocol_version,
        max_protocol_version=parsed.max_protocol_version,
        manifest_version=4,
        sdk_version=sdk_version,
        services=services_from_manifest(parsed),
    )


async def make_registry() -> Registry:
    registry = Registry()
    await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    return registry


def default_responder(invoke: Invoke) -> Outcome | None:
    """Greeter/greet and echo answer at once, Greeter/fail fails with 422, Counter answers its input; the rest keep running."""
    handler = (invoke.target.service, invoke.target.handler)
    if handler == ("Greeter", "greet"):
        return Outcome(value=b'"hello ' + invoke.body.strip(b'"') + b'"')
    if handler in (("Greeter", "echo"), ("Counter", "add"), ("Counter", "get")):
        return Outcome(value=invoke.body)
    if handler == ("Greeter", "noinput"):
        return Outcome(value=b"")
    if handler == ("Greeter", "fail"):
        return Outcome(failure=Failure(422, "no such user"))
    return None

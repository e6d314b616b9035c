"""Tests how duro's SDK declares services and handlers and describes them in the discovery manifest."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import BaseModel

import sdk
from protocol.manifest import ProtocolMode
from sdk import Context, ObjectContext, ObjectSharedContext, WorkflowContext, WorkflowSharedContext
from sdk._context import context_class_for
from sdk._discovery import ManifestVersionError, manifest_json, negotiate_manifest_version
from sdk._handler import handler_of
from sdk._identity import IdentityError, IdentityVerifier, normalise_path


class Order(BaseModel):
    id: str


def test_decorator_returns_the_function_and_registers_it() -> None:
    service = sdk.Service("Orders")

    async def place(ctx: Context, order: Order) -> str:
        return order.id

    decorated = service.handler()(place)

    assert decorated is place
    assert handler_of(place).name == "place"
    assert service.handlers["place"].arity == 2


def test_handler_name_override_and_duplicates() -> None:
    service = sdk.Service("Orders")

    @service.handler(name="submit")
    async def place(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):

        @service.handler(name="submit")
        async def other(ctx: Context) -> None:
            return None

    assert list(service.handlers) == ["submit"]


def test_handlers_must_be_async_with_one_or_two_parameters() -> None:
    service = sdk.Service("Bad")

    def sync(ctx: Context) -> None:
        return None

    async def three(ctx: Context, a: int, b: int) -> None:
        return None

    with pytest.raises(ValueError, match="async def"):
        service.handler()(sync)
    with pytest.raises(ValueError, match="3 parameters"):
        service.handler()(three)


def test_kinds_pick_the_context_type() -> None:
    obj = sdk.VirtualObject("Obj")
    flow = sdk.Workflow("Flow")
    svc = sdk.Service("Svc")

    @obj.handler()
    async def write(ctx: ObjectContext) -> None: ...

    @obj.handler(kind="shared")
    async def read(ctx: ObjectSharedContext) -> None: ...

    @flow.main()
    async def run(ctx: WorkflowContext) -> None: ...

    @flow.handler()
    async def signal(ctx: WorkflowSharedContext) -> None: ...

    @svc.handler()
    async def plain(ctx: Context) -> None: ...

    kinds = {fn.__name__: (handler_of(fn).kind, context_class_for(handler_of(fn))) for fn in (write, read, run, signal, plain)}
    assert kinds == {
        "write": ("exclusive", ObjectContext),
        "read": ("shared", ObjectSharedContext),
        "run": ("workflow", WorkflowContext),
        "signal": ("shared", WorkflowSharedContext),
        "plain": (None, Context),
    }


def test_invalid_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        sdk.VirtualObject("Obj").handler(kind="workflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no kind"):
        sdk.Service("Svc").handler(kind="shared")  # type: ignore[arg-type]


def manifest_of(*services: object, version: int = 4) -> dict:  # type: ignore[type-arg]
    return json.loads(manifest_json(services, version, ProtocolMode.BIDI_STREAM))  # type: ignore[arg-type]


def test_manifest_describes_types_payloads_and_options() -> None:
    obj = sdk.VirtualObject(
        "Inventory",
        description="stock",
        metadata={"team": "a"},
        state_preload=False,
        invocation_retry_policy=sdk.InvocationRetryPolicy(max_attempts=3, on_max_attempts="kill"),
    )

    @obj.handler(kind="shared", inactivity_timeout=timedelta(seconds=2))
    async def lookup(ctx: ObjectSharedContext, order: Order | None) -> int:
        """How many are left."""
        return 0

    [service] = manifest_of(obj)["services"]
    [handler] = service["handlers"]

    assert (service["ty"], service["documentation"], service["metadata"]) == ("VIRTUAL_OBJECT", "stock", {"team": "a"})
    assert service["enableLazyState"] is True
    assert (service["retryPolicyMaxAttempts"], service["retryPolicyOnMaxAttempts"]) == (3, "KILL")
    assert (handler["ty"], handler["documentation"], handler["inactivityTimeout"]) == ("SHARED", "How many are left.", 2000)
    assert handler["input"]["jsonSchema"]["type"] == ["object", "null"]
    assert handler["output"] == {"contentType": "application/json", "setContentTypeIfEmpty": False, "jsonSchema": {"type": "integer"}}


def test_manifest_v3_rejects_retry_policies() -> None:
    svc = sdk.Service("Svc", invocation_retry_policy=sdk.InvocationRetryPolicy(max_attempts=2))

    with pytest.raises(ManifestVersionError, match="retry_policy_max_attempts"):
        manifest_of(svc, version=3)


def test_manifest_version_negotiation() -> None:
    v = "application/vnd.restate.endpointmanifest.v{}+json"
    assert negotiate_manifest_version(None) == 2
    assert negotiate_manifest_version(", ".join(v.format(n) for n in (1, 2, 3, 4))) == 4
    assert negotiate_manifest_version(v.format(3)) == 3
    assert negotiate_manifest_version(v.format(1)) is None
    assert negotiate_manifest_version("application/json") is None


def test_identity_audience_path_normalisation() -> None:
    assert normalise_path("/prefix/invoke/Svc/handler") == "/invoke/Svc/handler"
    assert normalise_path("/prefix/discover") == "/discover"
    assert normalise_path("/other") == "/other"


def test_identity_rejects_malformed_keys_and_unsigned_requests() -> None:
    with pytest.raises(ValueError, match="publickeyv1_"):
        IdentityVerifier(["nope"])
    verifier = IdentityVerifier(["publickeyv1_" + "1" * 32])
    with pytest.raises(IdentityError, match="unsigned"):
        verifier.verify({"x-restate-signature-scheme": "unsigned"}, "/discover")
    IdentityVerifier().verify({}, "/discover")

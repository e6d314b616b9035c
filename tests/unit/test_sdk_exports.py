"""Locks the public names of duro's SDK and checks they match the official SDK's where both have them."""

from __future__ import annotations

import inspect

import restate

import sdk

EXPECTED_PUBLIC_NAMES = {
    "AttemptFinishedEvent",
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunOptions",
    "SdkApp",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "gather",
    "is_internal_exception",
    "select",
    "wait_completed",
}


def test_public_names_are_locked() -> None:
    assert set(sdk.__all__) == EXPECTED_PUBLIC_NAMES


def test_every_public_name_exists_and_comes_from_a_private_module() -> None:
    for name in sdk.__all__:
        value = getattr(sdk, name)
        module = getattr(value, "__module__", "")
        assert module.startswith("sdk._"), f"{name} comes from {module}"


def test_shared_names_have_compatible_signatures() -> None:
    """Every parameter the official API has, duro's has too, in the same order."""
    pairs = [
        (restate.Service.__init__, sdk.Service.__init__),
        (restate.Service.handler, sdk.Service.handler),
        (restate.VirtualObject.handler, sdk.VirtualObject.handler),
        (restate.Workflow.main, sdk.Workflow.main),
        (restate.app, sdk.app),
        (restate.Context.run, sdk.Context.run),
        (restate.Context.run_typed, sdk.Context.run_typed),
        (restate.Context.sleep, sdk.Context.sleep),
        (restate.Context.service_call, sdk.Context.service_call),
        (restate.Context.object_call, sdk.Context.object_call),
        (restate.Context.workflow_send, sdk.Context.workflow_send),
        (restate.Context.generic_call, sdk.Context.generic_call),
        (restate.Context.generic_send, sdk.Context.generic_send),
        (restate.Context.awakeable, sdk.Context.awakeable),
        (restate.Context.resolve_awakeable, sdk.Context.resolve_awakeable),
        (restate.Context.reject_awakeable, sdk.Context.reject_awakeable),
        (restate.Context.attach_invocation, sdk.Context.attach_invocation),
        (restate.ObjectContext.get, sdk.ObjectContext.get),
        (restate.ObjectContext.set, sdk.ObjectContext.set),
        (restate.WorkflowContext.promise, sdk.WorkflowContext.promise),
        (restate.TerminalError.__init__, sdk.TerminalError.__init__),
        (restate.RunOptions.__init__, sdk.RunOptions.__init__),
    ]
    for official, ours in pairs:
        official_names = [p for p in inspect.signature(official).parameters if p not in ("args", "kwargs")]
        our_names = list(inspect.signature(ours).parameters)
        assert our_names[: len(official_names)] == official_names, f"{official.__qualname__}: {our_names} vs {official_names}"


def test_official_combinators_and_contexts_all_exist() -> None:
    for name in ("select", "gather", "as_completed", "wait_completed", "RunOptions", "DurablePromise", "SendHandle"):
        assert hasattr(restate, name) and hasattr(sdk, name)

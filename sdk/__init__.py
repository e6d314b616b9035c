"""duro's Python SDK: write durable handlers (services, virtual objects, workflows) and serve them over ASGI.

A service written for the official `restate-sdk` runs on it with only its
import changed (`import sdk as restate`). The SDK speaks Restate's service
protocol V5 to V7 and imports nothing of duro but `protocol`.
"""

from sdk._asgi import SdkApp, app
from sdk._combinators import as_completed, gather, select, wait_completed
from sdk._context import (
    AttemptFinishedEvent,
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from sdk._errors import SdkInternalBaseException, TerminalError, is_internal_exception
from sdk._futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from sdk._options import InvocationRetryPolicy, RunOptions
from sdk._serde import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde, Serde
from sdk._service import Service, VirtualObject, Workflow

__all__ = [
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
]

"""The Restate service protocol as duro speaks it, for the runtime and the SDK alike.

It holds the frame codec and protobuf messages (V5-V7), version negotiation,
invocation and awakeable ids, the discovery manifest and the h2c client.
This package imports nothing else of duro. The runtime side (invoker, ingress)
and duro's SDK both build on it; the message classes live in
`protocol.service_protocol_pb2` (generated from `service_protocol.proto`).
"""

from protocol import service_protocol_pb2 as pb
from protocol.errors import (
    ConnectionLostError,
    H2cError,
    ManifestError,
    ProtocolError,
    StreamClosedError,
    VersionError,
)
from protocol.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER_BYTES,
    MESSAGE_CLASSES,
    REQUESTED_ACK,
    Frame,
    FrameDecoder,
    MessageType,
    decode_message,
    encode_frame,
    encode_message,
    is_command,
    is_completion_notification,
    is_control,
    is_notification,
    message_type_of,
)
from protocol.h2c import H2cClient, H2Stream
from protocol.ids import (
    InvocationId,
    derive_uuid,
    format_awakeable_id,
    idempotent_invocation_uuid,
    is_legacy_awakeable_id,
    parse_awakeable_id,
    workflow_invocation_uuid,
)
from protocol.manifest import (
    EndpointManifest,
    HandlerType,
    ProtocolMode,
    ServiceType,
    parse_manifest,
)
from protocol.versions import (
    DISCOVERY_ACCEPT,
    MANIFEST_CONTENT_TYPES,
    MAX_MANIFEST_VERSION,
    MAX_SERVICE_PROTOCOL_VERSION,
    MIN_MANIFEST_VERSION,
    MIN_SERVICE_PROTOCOL_VERSION,
    invocation_content_type,
    manifest_content_type,
    negotiate,
    parse_invocation_content_type,
    parse_manifest_content_type,
)

CANCEL_SIGNAL_ID = pb.CANCEL
"""Built-in signal id that asks an invocation to cancel."""

FIRST_AWAKEABLE_SIGNAL_ID = 17
"""Signal ids 1..16 are reserved; awakeables take ids from 17 up."""

__all__ = [
    "CANCEL_SIGNAL_ID",
    "DEFAULT_MAX_FRAME_BYTES",
    "DISCOVERY_ACCEPT",
    "FIRST_AWAKEABLE_SIGNAL_ID",
    "HEADER_BYTES",
    "MANIFEST_CONTENT_TYPES",
    "MAX_MANIFEST_VERSION",
    "MAX_SERVICE_PROTOCOL_VERSION",
    "MESSAGE_CLASSES",
    "MIN_MANIFEST_VERSION",
    "MIN_SERVICE_PROTOCOL_VERSION",
    "REQUESTED_ACK",
    "ConnectionLostError",
    "EndpointManifest",
    "Frame",
    "FrameDecoder",
    "H2Stream",
    "H2cClient",
    "H2cError",
    "HandlerType",
    "InvocationId",
    "ManifestError",
    "MessageType",
    "ProtocolError",
    "ProtocolMode",
    "ServiceType",
    "StreamClosedError",
    "VersionError",
    "decode_message",
    "derive_uuid",
    "encode_frame",
    "encode_message",
    "format_awakeable_id",
    "idempotent_invocation_uuid",
    "invocation_content_type",
    "is_command",
    "is_completion_notification",
    "is_control",
    "is_legacy_awakeable_id",
    "is_notification",
    "manifest_content_type",
    "message_type_of",
    "negotiate",
    "parse_awakeable_id",
    "parse_invocation_content_type",
    "parse_manifest",
    "parse_manifest_content_type",
    "pb",
    "workflow_invocation_uuid",
]

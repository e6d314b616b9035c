"""Locks the public names of the protocol package so changes to them are deliberate."""

from __future__ import annotations

import protocol

EXPECTED = {
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
}


def test_public_names_are_locked() -> None:
    assert set(protocol.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(protocol, name), name


def test_builtin_signal_ids() -> None:
    assert protocol.CANCEL_SIGNAL_ID == 1
    assert protocol.FIRST_AWAKEABLE_SIGNAL_ID == 17

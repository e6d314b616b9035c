"""Exceptions raised by the protocol package, one family per concern.

`ProtocolError` covers bytes or messages that break the service protocol
(framing, unknown message types, undecodable payloads, unsupported versions).
`ManifestError` covers a discovery response that is not a usable manifest.
`H2cError` and its subclasses cover the HTTP/2 cleartext transport.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Bytes or a message that violate the Restate service protocol."""


class FrameTooLargeError(ProtocolError):
    """A well-formed message of a known type whose payload exceeds the receiver's limit.

    Unlike other protocol errors, sending it again cannot help: the runtime
    fails the invocation instead of retrying it.
    """

    def __init__(self, message_type: int, length: int, max_frame_bytes: int) -> None:
        super().__init__(
            f"message of type {message_type:#06x} has a {length}-byte payload, over the limit max_frame_bytes={max_frame_bytes}"
        )
        self.message_type = message_type
        self.length = length
        self.max_frame_bytes = max_frame_bytes


class VersionError(ProtocolError, ValueError):
    """A service protocol version or content type that duro cannot use."""


class ManifestError(ValueError):
    """A discovery response that is not a usable endpoint manifest.

    `reason` names what was wrong, for example "missing protocolMode".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class H2cError(Exception):
    """A failure of the HTTP/2 cleartext transport; `reason` says which.

    `retry_safe` is True when the server cannot have processed the request
    (connection refused, stream refused or beyond a GOAWAY's last stream id).
    """

    def __init__(self, reason: str, retry_safe: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_safe = retry_safe


class StreamClosedError(H2cError):
    """The stream ended abnormally: reset by the peer, beyond a GOAWAY, or timed out."""


class StreamTimeoutError(StreamClosedError):
    """The stream got no response headers within the caller's timeout; it was reset."""


class ConnectionLostError(H2cError):
    """The connection failed: refused, reset, timed out, EOF or GOAWAY."""

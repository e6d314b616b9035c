"""Which deployment URIs the admin API may reach, checked before discovery sends anything.

`POST /deployments` makes the node fetch a URI of the caller's choosing, with
headers of the caller's choosing, so an open admin API is a probe into the
node's network. `DeploymentTargets.check` refuses, with a 400 naming the rule:

- a URI or header with whitespace or control characters (they would reach the
  HTTP/2 path or header block verbatim);
- a host outside `allowed_deployment_hosts` when that list is set (entries are
  host names, `*.domain` suffixes, IP addresses or CIDR networks);
- with `forbid_private_deployment_targets`, a host that is or resolves to a
  loopback, private, link-local, unspecified, multicast or reserved address.

The resolution is checked at registration; a name that resolves differently
later (DNS rebinding) is not caught here, which the README says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ingress.errors import BadRequest

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _has_control_or_space(text: str) -> bool:
    return any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def check_uri_text(uri: str) -> None:
    """BadRequest if `uri` holds whitespace or control characters."""
    if _has_control_or_space(uri):
        raise BadRequest(
            "The request field 'uri' is invalid. Reason: the URI contains whitespace or control characters; percent-encode them"
        )


def check_header_text(headers: dict[str, str]) -> None:
    """BadRequest if an additional header's name or value holds control characters (or its name whitespace)."""
    for name, value in headers.items():
        if not name or _has_control_or_space(name) or any((ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F for char in value):
            raise BadRequest(
                f"The request field 'additional_headers' is invalid. Reason: header {name!r} has an empty name, whitespace in its"
                " name, or control characters"
            )


@dataclass(frozen=True, slots=True)
class _HostRule:
    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> _HostRule:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IpNetwork] = []
        for entry in entries:
            text = entry.strip().lower()
            if text.startswith("*."):
                suffixes.append(text[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                names.add(text.rstrip("."))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self.names or any(host.endswith(suffix) for suffix in self.suffixes):
            return True
        address = _literal_address(host)
        return address is not None and any(address in network for network in self.networks)


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_private(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


class DeploymentTargets:
    """The admin API's rules for deployment URIs (see the module docstring)."""

    def __init__(self, allowed_hosts: Iterable[str] = (), forbid_private: bool = False) -> None:
        entries = list(allowed_hosts)
        self._allowed = _HostRule.parse(entries) if entries else None
        self._forbid_private = forbid_private

    async def check(self, uri: str, headers: dict[str, str]) -> None:
        """BadRequest naming the rule `uri` (with `headers`) breaks; nothing is sent to the target before this returns."""
        check_uri_text(uri)
        check_header_text(headers)
        host = urlsplit(uri).hostname
        if host is None:
            return  # discovery refuses a URI without a host, naming it
        if self._allowed is not None and not self._allowed.allows(host):
            raise BadRequest(
                f"The request field 'uri' is invalid. Reason: host {host!r} is not in allowed_deployment_hosts; ask the operator to add it"
            )
        if self._forbid_private:
            await self._refuse_private(host)

    async def _refuse_private(self, host: str) -> None:
        literal = _literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError:
                return  # discovery will fail to connect and say so
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        private = [address for address in addresses if _is_private(address)]
        if private:
            raise BadRequest(
                f"The request field 'uri' is invalid. Reason: host {host!r} is (or resolves to) the private or loopback address"
                f" {private[0]}, and forbid_private_deployment_targets is set"
            )

"""Tests of the rules for deployment URIs: characters, the host allowlist and private targets."""

from __future__ import annotations

import pytest

from ingress.deployment_targets import DeploymentTargets
from ingress.errors import BadRequest


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://svc.internal:9080", True),
        ("http://SVC.internal.:9080", True),
        ("http://a.b.apps.example/x", True),
        ("http://apps.example", False),
        ("http://10.1.2.3:9080", True),
        ("http://10.2.0.1", False),
        ("http://[fd00::5]:9080", True),
        ("http://elsewhere.example", False),
    ],
)
async def test_the_allowlist_takes_names_suffixes_and_networks(uri: str, allowed: bool) -> None:
    targets = DeploymentTargets(["svc.internal", "*.apps.example", "10.1.0.0/16", "fd00::/64"])
    if allowed:
        await targets.check(uri, {})
    else:
        with pytest.raises(BadRequest, match="not in allowed_deployment_hosts"):
            await targets.check(uri, {})


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:9080",
        "http://localhost:9080",
        "http://[::1]:9080",
        "http://[::ffff:127.0.0.1]:9080",
        "http://10.0.0.1",
        "http://172.16.5.5",
        "http://192.168.1.1",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0:9080",
    ],
)
async def test_private_targets_are_refused_when_forbidden(uri: str) -> None:
    await DeploymentTargets().check(uri, {})  # allowed by default
    with pytest.raises(BadRequest, match="forbid_private_deployment_targets"):
        await DeploymentTargets(forbid_private=True).check(uri, {})


async def test_a_public_address_passes_the_private_rule() -> None:
    await DeploymentTargets(forbid_private=True).check("http://93.184.215.14:9080", {})


@pytest.mark.parametrize(
    ("uri", "headers"),
    [("http://h/a b", {}), ("http://h/\x00", {}), ("http://h/\x7f", {}), ("http://h", {"x": "a\nb"}), ("http://h", {"": "x"})],
)
async def test_control_characters_and_whitespace_are_refused(uri: str, headers: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="control characters"):
        await DeploymentTargets().check(uri, headers)

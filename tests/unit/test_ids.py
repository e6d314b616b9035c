"""Tests invocation and awakeable ids against vectors taken from a real Restate 1.7.12 server."""

from __future__ import annotations

import base64

import pytest

from protocol.ids import (
    InvocationId,
    UuidDeriver,
    derive_uuid,
    format_awakeable_id,
    idempotent_invocation_uuid,
    is_legacy_awakeable_id,
    parse_awakeable_id,
    partition_key_base62,
    ulid_bytes,
    workflow_invocation_uuid,
)

# (x-restate-id, awakeable id the Python SDK built for its first awakeable,
#  partition key, uuid hex) as returned by restate-server 1.7.12.
REAL_VECTORS = [
    (
        "inv_1chFmvtQDzek3yEMuw4tD8ewHTMUn6CvOC",
        "sign_1LMx3mzIoF48Or6r_CBSU6U627MZ1--90AAAAEQ",
        0x2CCC779B3228178F,
        "0eafaaff081494e94eb6ecc675fbef74",
    ),
    (
        "inv_1k0fIAuAM4aA63XfS03gAb0I79ouU1ithJ",
        "sign_1oNXdcgcAAOm_9GEJZwJYY-dOKl5AyzzHAAAAEQ",
        0xA0D5DD72070000E9,
        "bff4610967025863e74e2a5e40cb3cc7",
    ),
    (
        "inv_13PpG8FHcFcF3KPTRwAjzfUGDML1Nf6FoS",
        "sign_15bNS1MINmiwKOXTlxsTGdAO6tegKUWR7AAAAEQ",
        0xE5B352D4C20D9A2C,
        "0a3974e5c6c4c67403bab5e80a51647b",
    ),
]


@pytest.mark.parametrize(("text", "awakeable", "partition_key", "uuid_hex"), REAL_VECTORS)
def test_real_server_vectors(text: str, awakeable: str, partition_key: int, uuid_hex: str) -> None:
    invocation_id = InvocationId.parse(text)
    assert invocation_id == InvocationId(partition_key, bytes.fromhex(uuid_hex))
    assert str(invocation_id) == text
    assert parse_awakeable_id(awakeable) == (invocation_id, 17)
    assert format_awakeable_id(invocation_id, 17) == awakeable


@pytest.mark.parametrize(("text", "awakeable", "partition_key", "uuid_hex"), REAL_VECTORS)
def test_an_id_written_on_its_keys_known_characters_is_the_same_text(text: str, awakeable: str, partition_key: int, uuid_hex: str) -> None:
    assert InvocationId(partition_key, bytes.fromhex(uuid_hex)).text_on(partition_key_base62(partition_key)) == text


def test_a_uuid_deriver_hashes_its_prefix_once_and_derives_what_derive_uuid_does() -> None:
    deriver = UuidDeriver("kafka", "kafka:group:topic:3")
    assert [deriver.derive(str(offset)) for offset in (0, 7, 10**12)] == [
        derive_uuid("kafka", "kafka:group:topic:3", str(offset)) for offset in (0, 7, 10**12)
    ]
    assert deriver.derive(b"7") == derive_uuid("kafka", "kafka:group:topic:3", "7")
    assert UuidDeriver().derive("only") == derive_uuid("only")


def test_idempotent_uuid_matches_real_server() -> None:
    # POST /Ids/probe with idempotency-key: my-key
    invocation_id = InvocationId.parse("inv_1cBwJE4haxug5CnHXn3CY0cqPllK5NPHw4")
    assert invocation_id.uuid == idempotent_invocation_uuid("Ids", "probe", "my-key")
    assert invocation_id.uuid != idempotent_invocation_uuid("Ids", "probe", "other-key")


def test_workflow_uuid_matches_real_server() -> None:
    # POST /IdsWf/wfkey1/run
    invocation_id = InvocationId.parse("inv_1dPCKUMEqPPa6Vz0G3jrwY80wx6Z2iNiXP")
    assert invocation_id.uuid == workflow_invocation_uuid("IdsWf", "wfkey1")


def test_derive_uuid_is_sha256_prefix_of_comma_join() -> None:
    import hashlib

    assert derive_uuid("wf", b"a", "b") == hashlib.sha256(b"wf,a,b").digest()[:16]
    assert derive_uuid("x") != derive_uuid("y")
    with pytest.raises(ValueError, match="at least one part"):
        derive_uuid()


@pytest.mark.parametrize("partition_key", [0, 1, 61, 62, 2**32, 2**64 - 1])
@pytest.mark.parametrize("uuid", [bytes(16), b"\xff" * 16, bytes(range(16))])
def test_string_and_binary_round_trip(partition_key: int, uuid: bytes) -> None:
    invocation_id = InvocationId(partition_key, uuid)
    text = str(invocation_id)
    assert len(text) == 38 and text.startswith("inv_1")
    assert InvocationId.parse(text) == invocation_id
    raw = invocation_id.to_bytes()
    assert raw == partition_key.to_bytes(8, "big") + uuid
    assert InvocationId.from_bytes(raw) == invocation_id


def test_zero_id_is_all_zero_digits() -> None:
    assert str(InvocationId(0, bytes(16))) == "inv_1" + "0" * 33


def test_random_ids_are_distinct_and_ulid_shaped() -> None:
    first, second = InvocationId.random(7, now_ms=1234), InvocationId.random(7, now_ms=1234)
    assert first != second
    assert first.uuid[:6] == (1234).to_bytes(6, "big")
    assert len(ulid_bytes()) == 16


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("", "lacks the prefix"),
        ("dp_10a9xIqTBPVOIn3RsflrwPf", "lacks the prefix"),
        ("inv_1abc", "has 8 characters"),
        ("inv_1chFmvtQDzek3yEMuw4tD8ewHTMUn6CvO-", "not base62"),
        ("inv_1zzzzzzzzzzzEMuw4tD8ewHTMUn6CvOCxx", "out of range"),
    ],
)
def test_parse_rejects_with_expected_form(bad: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        InvocationId.parse(bad)
    assert "expected 'inv_1'" in str(info.value)


def test_constructor_and_from_bytes_validate() -> None:
    with pytest.raises(ValueError, match="not a u64"):
        InvocationId(2**64, bytes(16))
    with pytest.raises(ValueError, match="expected 16"):
        InvocationId(1, bytes(15))
    with pytest.raises(ValueError, match="expected 24"):
        InvocationId.from_bytes(bytes(23))


def test_legacy_prom_awakeable_id_is_accepted() -> None:
    invocation_id = InvocationId(42, bytes(range(16)))
    raw = invocation_id.to_bytes() + (3).to_bytes(4, "big")
    legacy = "prom_1" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_awakeable_id(legacy) == (invocation_id, 3)
    assert is_legacy_awakeable_id(legacy)
    assert not is_legacy_awakeable_id(format_awakeable_id(invocation_id, 3))


def test_padded_awakeable_id_is_accepted() -> None:
    awakeable = REAL_VECTORS[0][1]
    assert parse_awakeable_id(awakeable + "==") == parse_awakeable_id(awakeable)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("inv_1chFmvtQDzek3yEMuw4tD8ewHTMUn6CvOC", "unknown prefix"),
        ("sign_1***", "not valid base64url"),
        ("sign_1ab+c", "not valid base64url"),
        ("sign_1AAAA", "holds 3 bytes; expected 28"),
    ],
)
def test_bad_awakeable_ids(bad: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_awakeable_id(bad)


def test_format_awakeable_rejects_bad_index() -> None:
    with pytest.raises(ValueError, match="not a u32"):
        format_awakeable_id(InvocationId(1, bytes(16)), 2**32)

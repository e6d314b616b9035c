"""The ingress and admin error family: every kind has one HTTP status, in one table, and domain errors name their kind."""

from __future__ import annotations

import pytest

from ingress import errors
from ingress.errors import (
    HTTP_STATUS,
    ApiError,
    BadRequest,
    Conflict,
    Internal,
    NotFound,
    NotReady,
    Unavailable,
    http_status,
    kind_of_status,
)
from ingress.registry import DeploymentNotFound, RegistryConflict, RegistryError, ServiceNotFound
from ingress.subscriptions import KafkaClusterNotFound, KafkaUnavailable, SubscriptionNotFound


def test_every_kind_has_its_status_in_the_one_table() -> None:
    kinds = {value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, ApiError) and value is not ApiError}
    assert kinds == set(HTTP_STATUS), "each kind of error appears in HTTP_STATUS, and nothing else does"
    assert len(set(HTTP_STATUS.values())) == len(HTTP_STATUS), "one kind per status"
    assert (BadRequest("x").status, NotFound("x").status, Conflict("x").status, NotReady("x").status) == (400, 404, 409, 470)
    assert errors.InsufficientStorage("disk full").status == 507


def test_a_subclass_answers_with_its_kinds_status() -> None:
    class UnknownDeployment(NotFound):
        pass

    assert http_status(UnknownDeployment("no deployment dp_1")) == 404
    with pytest.raises(AssertionError, match="not one of the kinds"):
        http_status(ApiError("a bare ApiError has no kind"))


def test_a_status_from_elsewhere_finds_its_kind() -> None:
    assert kind_of_status(409) is Conflict
    assert kind_of_status(503) is Unavailable
    assert kind_of_status(418) is Internal, "a status without a kind answers 500"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RegistryError, BadRequest),
        (RegistryConflict, Conflict),
        (DeploymentNotFound, NotFound),
        (ServiceNotFound, NotFound),
        (SubscriptionNotFound, NotFound),
        (KafkaClusterNotFound, NotFound),
        (KafkaUnavailable, Unavailable),
    ],
)
def test_registry_errors_name_their_kind(error: type[RegistryError], kind: type[ApiError]) -> None:
    assert error.kind is kind

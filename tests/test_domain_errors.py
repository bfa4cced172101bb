"""Domain errors reach HTTP clients through one table: every refusal the model can make has
its row there, with the code the error itself carries."""

from __future__ import annotations

from projections import domain
from projections.domain import DomainError
from services.http.errors import DOMAIN_PROBLEMS, from_domain
from services.http.wire import FieldError


def _kinds(root: type[DomainError]) -> set[type[DomainError]]:
    found = {root}
    for sub in root.__subclasses__():
        found |= _kinds(sub)
    return found


def test_every_domain_error_has_its_row_with_its_own_code() -> None:
    for kind in _kinds(DomainError):
        assert kind in DOMAIN_PROBLEMS, kind
        assert DOMAIN_PROBLEMS[kind].code == kind.code, kind


def test_the_refusal_of_one_field_names_the_field() -> None:
    problem = from_domain(domain.OwnerKeepsAccess("the owner's access cannot be revoked"))
    assert (problem.status, problem.code) == (422, "invalid_request")
    assert problem.detail == "account: the owner's access cannot be revoked"
    assert problem.errors == [FieldError("account", "the owner's access cannot be revoked")]


def test_a_domain_error_without_a_message_says_its_docstring() -> None:
    assert str(DomainError()) == "The command breaks a rule of the domain."

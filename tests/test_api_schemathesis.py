"""Schemathesis against the app, in-process: every operation of the OpenAPI document, with
generated valid and invalid input; no answer is a 5xx, and every answer (errors included) has
a documented status, content type and schema. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from accounts import tokens
from accounts.models import Role
from audit.operations import Actor
from tests import factories
from tests.webclient import make_user
from tickets import operations

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def api_schema(app, db):
    """The app's own OpenAPI document, with a few calls to read."""
    for code in ("93", "75"):
        call = factories.call(db, departement=code, started_at=datetime(2026, 11, 16, 9, tzinfo=UTC),
                              events=2, recording_url="https://api.twilio.com/2010-04-01/"
                              "Accounts/AC0/Recordings/RE1", recording_seconds=30)
        operations.from_voicemail(db, call)  # a ticket to list
    db.commit()
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@pytest.fixture
def headers(db):
    """An admin's token: every operation is open to them (the others' refusals are tested in
    test_web_authorization.py)."""
    user = make_user(db, "schemathesis@example.gouv.fr", Role.admin)
    _, secret = tokens.create(db, Actor.cli(), user, "schemathesis")
    db.commit()
    return {"Authorization": f"Bearer {secret}"}


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(api_schema, headers, mode):
    # Driven by hand (schemathesis' own pytest loader does not run on pytest 9.2 yet): each
    # operation gets its own Hypothesis run; the first failure stops the test with its case.
    operations = list(_operations(api_schema))
    assert len(operations) >= 10  # every endpoint of the API is in the document
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()

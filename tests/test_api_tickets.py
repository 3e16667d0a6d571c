"""`/api/v1/tickets`: scope by role, filters and cursor, the detail with its history, the actions
with the pages' rules (403 outside one's rights, 422 for a refused move), escalation and its
two emails. On SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy

import pytest

from accounts import tokens
from accounts.models import Role
from audit.operations import Actor
from tests import factories
from tests.webclient import make_user
from tickets import operations
from tickets.models import ClosureStatus, Ticket, TicketStatus

TEAM = "equipe.nationale@example.gouv.fr"


@pytest.fixture(autouse=True)
def outbox(app, tmp_path):
    app.config["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    app.config["NATIONAL_TEAM_EMAILS"] = TEAM
    return tmp_path / "outbox"


class Api:
    """A token's requests."""

    def __init__(self, client, secret):
        self.client, self.headers = client, {"Authorization": f"Bearer {secret}"}

    def get(self, url):
        return self.client.get(url, headers=self.headers)

    def post(self, url, body=None):
        return self.client.post(url, json=body if body is not None else {}, headers=self.headers)


def _api(app, db, address, role, departements=()):
    user = make_user(db, address, role, departements=departements)
    _, secret = tokens.create(db, Actor.cli(), user, "tests")
    db.commit()
    return Api(app.test_client(), secret)


@pytest.fixture
def ref93(app, db):
    return _api(app, db, "ref93@example.gouv.fr", Role.referent, ["93"])


@pytest.fixture
def ref75(app, db):
    return _api(app, db, "ref75@example.gouv.fr", Role.referent, ["75"])


@pytest.fixture
def national(app, db):
    return _api(app, db, "nat@example.gouv.fr", Role.national)


def _voicemail(db, clock, departement="93") -> Ticket:
    call = factories.call(db, departement=departement, started_at=clock(),
                          recording_url="https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1",
                          recording_seconds=42)
    ticket = operations.from_voicemail(db, call, at=clock())
    db.commit()
    return ticket


def _messages(outbox):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in outbox.glob("*.eml")] if outbox.exists() else []


def test_scope_filters_and_cursor(app, db, clock, ref93, national):
    mine = [_voicemail(db, clock, "93") for _ in range(3)]
    other = _voicemail(db, clock, "75")
    response = ref93.get("/api/v1/tickets?limit=2")
    assert response.status_code == 200
    page = response.get_json()
    assert [t["number"] for t in page["items"]] == [mine[2].number, mine[1].number]
    item = page["items"][0]
    assert item["kind"] == "voicemail" and item["status"] == "new" and item["departement"] == "93"
    assert item["created_at"] == "2026-12-21T10:00:00+01:00"
    assert item["due_at"] == "2026-12-21T11:00:00+01:00" and item["late"] is False
    rest = ref93.get(f"/api/v1/tickets?limit=2&after={page['next']}").get_json()
    assert [t["number"] for t in rest["items"]] == [mine[0].number] and rest["next"] is None
    assert other.number not in str(ref93.get("/api/v1/tickets").get_json())
    # Filters.
    assert ref93.get("/api/v1/tickets?departement=75").get_json()["items"] == []
    assert ref93.get("/api/v1/tickets?kind=callback").get_json()["items"] == []
    assert ref93.get("/api/v1/tickets?mine=true").get_json()["items"] == []
    assert len(ref93.get("/api/v1/tickets?status=open").get_json()["items"]) == 3
    clock.set("2026-12-21T11:30")
    assert len(ref93.get("/api/v1/tickets?late=true").get_json()["items"]) == 3
    # The national team reads every ticket; `national=true` keeps its own.
    assert len(national.get("/api/v1/tickets").get_json()["items"]) == 4
    assert national.get("/api/v1/tickets?national=true").get_json()["items"] == []
    # Wrong input: 422 in French, naming the field.
    response = ref93.get("/api/v1/tickets?after=abc")
    assert response.status_code == 422 and "after" in response.get_json()["errors"]["query"]
    assert ref93.get("/api/v1/tickets?departement=XX").status_code == 422
    assert ref93.get("/api/v1/tickets?status=nimporte").status_code == 422


def test_referent_of_another_departement_is_refused(app, db, clock, ref93, ref75):
    ticket = _voicemail(db, clock, "93")
    base = f"/api/v1/tickets/{ticket.number}"
    assert ref75.get(base).status_code == 403
    for action, body in (("take", {}), ("status", {"status": "in_progress"}),
                         ("comments", {"text": "intrus"}), ("escalate", {"description": "x"}),
                         ("close", {"closure_status": "by_referent"})):
        response = ref75.post(f"{base}/{action}", body)
        assert response.status_code == 403, action
        assert response.mimetype == "application/problem+json"
    db.expire_all()
    assert [e.kind for e in db.get(Ticket, ticket.id).events if e.kind != "email"] == ["created"]
    assert ref93.get("/api/v1/tickets/T-2026-999999").status_code == 404
    assert ref93.get("/api/v1/tickets/nimporte").status_code == 404


def test_workflow_comments_and_closure(app, db, clock, ref93):
    ticket = _voicemail(db, clock, "93")
    base = f"/api/v1/tickets/{ticket.number}"
    detail = ref93.post(f"{base}/take").get_json()
    assert detail["status"] == "in_progress" and detail["assigned_to"] == "ref93@example.gouv.fr"
    assert detail["may_handle"] and detail["may_escalate"] and detail["has_recording"]
    response = ref93.post(f"{base}/comments", {"text": "Rappelé"})
    assert response.status_code == 201
    response = ref93.post(f"{base}/comments", {"text": ""})
    assert response.status_code == 422 and "text" in response.get_json()["errors"]["json"]
    response = ref93.post(f"{base}/status", {"status": "new"})
    assert response.status_code == 422 and "possible" in response.get_json()["detail"]
    assert ref93.post(f"{base}/status", {"status": "resolved"}).status_code == 200
    response = ref93.post(f"{base}/close", {"closure_status": "by_national"})
    assert response.status_code == 403
    response = ref93.post(f"{base}/close", {"closure_status": "delay_exceeded"})
    assert response.status_code == 422
    detail = ref93.post(f"{base}/close", {"closure_status": "by_referent",
                                          "comment": "Réglé"}).get_json()
    assert detail["status"] == "closed" and detail["closure_status"] == "by_referent"
    events = detail["events"]
    assert [e["kind"] for e in events if e["kind"] != "email"] == [
        "created", "assigned", "status", "comment", "status", "closed"]
    comment = next(e for e in events if e["kind"] == "comment")
    assert comment["text"] == "Rappelé" and comment["actor"] == "api:ref93@example.gouv.fr"
    assert comment["at"].endswith("+01:00")
    # No endpoint edits or deletes a comment.
    assert ref93.client.delete(f"{base}/comments", headers=ref93.headers).status_code == 405
    db.expire_all()
    ticket = db.get(Ticket, ticket.id)
    assert ticket.status is TicketStatus.closed and ticket.closure_status is ClosureStatus.by_referent
    assert ticket.solicitation.resolved_first_level is True


def test_escalation_sends_both_emails_and_the_team_sees_it(app, db, clock, ref93, ref75,
                                                            national, outbox):
    ticket = _voicemail(db, clock, "93")
    base = f"/api/v1/tickets/{ticket.number}"
    before = {m["Message-ID"] for m in _messages(outbox)}
    assert ref75.post(f"{base}/escalate", {"description": "intrus"}).status_code == 403
    assert national.post(f"{base}/escalate", {"description": "non"}).status_code == 403
    # The national team reads it but may not handle a département's ticket.
    assert national.get(base).get_json()["may_handle"] is False
    assert national.post(f"{base}/comments", {"text": "non"}).status_code == 403
    response = ref93.post(f"{base}/escalate", {"description": "   "})
    assert response.status_code == 422 and "description" in response.get_json()["errors"]["json"]
    assert {m["Message-ID"] for m in _messages(outbox)} == before
    detail = ref93.post(f"{base}/escalate", {"description": "Compte bloqué depuis lundi"}).get_json()
    assert detail["national"] is True
    sent = [m for m in _messages(outbox) if m["Message-ID"] not in before]
    assert sorted(str(m["To"]) for m in sent) == sorted(["ref93@example.gouv.fr", TEAM])
    assert ref93.post(f"{base}/escalate", {"description": "encore"}).status_code == 422
    listed = national.get("/api/v1/tickets?national=true").get_json()["items"]
    assert [t["number"] for t in listed] == [ticket.number]
    assert national.get(base).get_json()["may_handle"] is True
    assert national.post(f"{base}/close", {"closure_status": "by_national"}).status_code == 200

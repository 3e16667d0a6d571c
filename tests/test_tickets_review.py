"""Hostile review of the tickets (issue 11): the defects it found (now fixed) and the
checks that held."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from accounts.models import Role
from callflows.keypad import parse_callback_number
from tests.test_api_tickets import _api, _voicemail
from tests.test_web_tickets import _client, _post
from tickets import emails, operations
from tickets.models import Incident

TEAM = "equipe.nationale@example.gouv.fr"


@pytest.fixture(autouse=True)
def outbox(app, tmp_path):
    app.config["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    app.config["NATIONAL_TEAM_EMAILS"] = TEAM
    return tmp_path / "outbox"


# --- incident message expiry ------------------------------------------------------------------

@pytest.mark.parametrize("code", ["971", "973"])
def test_absurd_expiry_on_an_overseas_incident_is_a_field_error_not_a_500(app, db, code):
    national = _client(app, db, "nat@example.gouv.fr", Role.national)
    url = "/tickets/incidents/"
    assert _post(national, url, {"titre": "Panne", "departement": code}, url).status_code == 302
    incident = db.scalars(select(Incident)).one()
    page = f"/tickets/incidents/{incident.id}"
    response = _post(national, f"{page}/message", {"message": "Le portail est en panne.",
                                                   "jusqu_au": "9999-12-31T23:59",
                                                   "action": "enregistrer"}, page)
    assert response.status_code in (302, 400), response.status_code


def test_incident_message_of_5000_chars_is_refused(app, db):
    national = _client(app, db, "nat@example.gouv.fr", Role.national)
    url = "/tickets/incidents/"
    _post(national, url, {"titre": "Panne", "departement": ""}, url)
    incident = db.scalars(select(Incident)).one()
    page = f"/tickets/incidents/{incident.id}"
    response = _post(national, f"{page}/message", {"message": "a" * 5000,
                                                   "action": "enregistrer"}, page)
    assert response.status_code == 400


# --- clumsy referent through the API -----------------------------------------------------------

def test_api_wrong_order_and_odd_text(app, db, clock):
    ref93 = _api(app, db, "ref93@example.gouv.fr", Role.referent, ["93"])
    ticket = _voicemail(db, clock, "93")
    base = f"/api/v1/tickets/{ticket.number}"
    assert ref93.post(f"{base}/comments", {"text": "a\x00b"}).status_code == 422
    assert ref93.post(f"{base}/comments", {"text": "a" * 5000}).status_code == 422
    assert ref93.post(f"{base}/comments", {"text": "   "}).status_code == 422
    assert ref93.post(f"{base}/escalate", {"description": "x"}).status_code == 200
    assert ref93.post(f"{base}/escalate", {"description": "x"}).status_code == 422
    assert ref93.post(f"{base}/close", {"closure_status": "by_referent"}).status_code == 200
    assert ref93.post(f"{base}/take", {}).status_code == 422
    assert ref93.post(f"{base}/close", {"closure_status": "by_referent"}).status_code == 422
    assert ref93.post(f"{base}/close", {"closure_status": "delay_exceeded"}).status_code == 422


def test_other_departement_refused_everywhere(app, db, clock):
    ref75 = _api(app, db, "ref75@example.gouv.fr", Role.referent, ["75"])
    ticket = _voicemail(db, clock, "93")
    base = f"/api/v1/tickets/{ticket.number}"
    assert ref75.get(base).status_code == 403
    for path, body in [("take", {}), ("status", {"status": "in_progress"}),
                       ("comments", {"text": "x"}), ("escalate", {"description": "x"}),
                       ("close", {"closure_status": "by_referent"})]:
        assert ref75.post(f"{base}/{path}", body).status_code == 403, path
    assert ticket.number not in ref75.get("/api/v1/tickets?status=open").get_data(as_text=True)


# --- templates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("injected", ["{0.__class__}", "{numero.__class__}", "{numero!r}",
                                      "{numero:>999999999}", "{numero[0]}", "{", "}"])
def test_template_injection_refused(injected):
    shipped = emails.template("closed")
    with pytest.raises(emails.EmailTemplateError):
        emails.check_template("closed", shipped.subject, shipped.body + injected)


# --- callback number typed --------------------------------------------------------------------

@pytest.mark.parametrize("digits,region,expected", [
    ("0612345678", "FR", "+33612345678"),
    ("0033612345678", "FR", "+33612345678"),
    ("0690123456", "FR", "+590690123456"),
    ("0899123456", "FR", None),     # premium rate
    ("0810123456", "FR", None),     # shared cost
    ("061234567", "FR", None),      # too short
    ("06123456789", "FR", None),    # too long
    ("06*2345678", "FR", None),
    ("112", "FR", None),
    ("0033899123456", "FR", None),  # premium through 00
    ("00447911123456", "FR", "+447911123456"),
])
def test_callback_numbers(digits, region, expected):
    assert parse_callback_number(digits, region) == expected


@pytest.mark.parametrize("digits", ["008816212345678",   # Iridium (satellite, several €/min)
                                    "00870772123456",    # Inmarsat
                                    "00882160012345",    # international networks
                                    "00883510012345"])
def test_callback_to_non_geographic_premium_cost_numbers_is_refused(digits):
    """A hostile caller must not make referents call satellite / international-network numbers
    (the classic toll-fraud destinations); today they are accepted as MOBILE or VOIP."""
    assert parse_callback_number(digits, "FR") is None


# --- flaky network --------------------------------------------------------------------------------

def test_escalation_with_smtp_down_keeps_the_ticket_and_says_so(app, db, clock):
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT=2)
    ref93 = _api(app, db, "ref93@example.gouv.fr", Role.referent, ["93"])
    ticket = _voicemail(db, clock, "93")
    response = ref93.post(f"/api/v1/tickets/{ticket.number}/escalate", {"description": "Urgent"})
    assert response.status_code == 200
    db.expire_all()
    kept = operations.by_number(db, ticket.number)
    assert kept.national
    failures = [e for e in kept.events if e.kind == "email" and not e.data.get("sent")]
    assert len(failures) >= 2, [e.text for e in kept.events]

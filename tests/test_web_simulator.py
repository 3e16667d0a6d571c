"""The browser call simulator: a test call through the real signed webhooks, one question at a
time, never counted."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from accounts.models import Role
from tests.webclient import form_fields, login, make_user
from tracking.models import Call, Outcome


def _form(client, action: str):
    page = client.get("/simulateur").get_data(as_text=True)
    start = page.index(f'action="{action}"')
    return form_fields(page[page.rindex("<form", 0, start):])


def _press(client, digits: str | None):
    fields = _form(client, "/simulateur/touches")
    if digits is None:
        fields["silence"] = "1"
    else:
        fields["digits"] = digits
    assert client.post("/simulateur/touches", data=fields).status_code == 302
    return client.get("/simulateur").get_data(as_text=True)


def test_a_test_call_goes_question_by_question_to_a_referent(admin, db):
    fields = _form(admin, "/simulateur/appeler")
    fields["referent"] = "accept"
    assert admin.post("/simulateur/appeler", data=fields).status_code == 302
    page = admin.get("/simulateur").get_data(as_text=True)
    assert "Appel en cours" in page and "Tapez le numéro de votre département" in page
    page = _press(admin, "93#")
    assert "l&#39;appelant tape 93" in page
    assert "Vous avez choisi le département 93, Seine-Saint-Denis" in page
    page = _press(admin, "1")
    assert "indiquez son motif" in page
    page = _press(admin, None)  # no choice in the menu
    assert "aucune saisie" in page
    assert "Appel terminé" in page
    assert "Appel de +33199009301" in page
    assert "Issue enregistrée : <strong>décroché</strong>" in page
    call = db.scalars(select(Call)).one()
    assert call.outcome is Outcome.answered and call.departement_code == "93"
    assert call.test


def test_hang_up_and_bad_keys(admin, db):
    admin.post("/simulateur/appeler", data=_form(admin, "/simulateur/appeler"))
    fields = _form(admin, "/simulateur/touches")
    fields["digits"] = "9a"
    page = admin.post("/simulateur/touches", data=fields, follow_redirects=True).get_data(as_text=True)
    assert "Touches 0 à 9, * et # uniquement." in page
    hang = _form(admin, "/simulateur/raccrocher")
    assert admin.post("/simulateur/raccrocher", data=hang).status_code == 302
    page = admin.get("/simulateur").get_data(as_text=True)
    assert "Appel terminé" in page and "Issue enregistrée" in page
    call = db.scalars(select(Call)).one()
    assert call.outcome is Outcome.abandoned and call.test


def test_another_user_cannot_act_on_my_call(app, admin, db):
    admin.post("/simulateur/appeler", data=_form(admin, "/simulateur/appeler"))
    make_user(db, "autre@example.gouv.fr", Role.national)
    other = app.test_client()
    login(other, "autre@example.gouv.fr")
    with admin.session_transaction() as mine:
        sim = mine["simulation"]
    with other.session_transaction() as theirs:
        theirs["simulation"] = sim
    page = other.get("/simulateur").get_data(as_text=True)
    assert "Appel en cours" not in page


def test_test_calls_are_never_counted(admin, db, twilio):
    from tracking.models import Solicitation
    from ivr.simulator import Referent
    twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[Referent("accept")])
    twilio.call(caller="+33612345679", keys=["93", "1", "1"], referents=[Referent("accept")],
                test=True)
    calls = db.scalars(select(Call).order_by(Call.id)).all()
    assert [c.test for c in calls] == [False, True]
    rows = db.scalars(select(Solicitation)).all()
    assert [r.call_id for r in rows] == [calls[0].id]  # the test call has no row: not counted

"""Defects found by a second hostile review of issue 10 (referents' and national team's flows),
each reproduced through a real entry point: a call's page silently drops a motif, or a
sous-motif, whose taxonomy entry was retired since it was chosen; the page's « Ajouter une
sollicitation » stores an hour skipped or repeated at a daylight-saving change as another
instant, where the API refuses it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from audit.models import AuditEntry
from tests import factories
from tests.test_web_referents import ref93  # noqa: F401  (fixture)
from tests.webclient import form_fields, post_form
from tracking import solicitations
from tracking.models import Motif, SousMotif, Solicitation, Thematique

PARIS = ZoneInfo("Europe/Paris")


def _rows(db) -> list[Solicitation]:
    db.expire_all()
    return db.scalars(select(Solicitation).order_by(Solicitation.id)).all()


def _audit(db) -> list[AuditEntry]:
    db.expire_all()
    return db.scalars(select(AuditEntry).where(AuditEntry.entity == "sollicitation")
                      .order_by(AuditEntry.id)).all()


def _qualified_call(db, motifs) -> Solicitation:
    call = factories.call(db, departement="93", thematique="usage")
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    solicitations.qualify_motifs(db, row, motifs, actor=factories.ACTOR)
    db.commit()
    return row


def _qualification(db) -> list[tuple]:
    return [(r.reference, r.thematique_id, r.motif_id, r.sous_motif_id) for r in _rows(db)]


# --- 1. A retired taxonomy entry is dropped from the call when its page is saved --------------

@pytest.mark.parametrize("motifs, model, key", [
    # The call was split into two motifs; the second thématique was retired since (the
    # taxonomy file no longer lists it): the form showed motif 2 as « À qualifier » and saving
    # it deleted the « Question réglementaire » row.
    ([("usage", "doublons", None), ("reglementaire", "question", None)], Thematique, "reglementaire"),
    # A retired sous-motif was silently cleared.
    ([("assistance_technique", "incident", "lenteur")], SousMotif, "lenteur"),
    # A motif retired within a thématique still offered: the row showed « À qualifier » and the
    # save was refused (« choisissez le motif ») until the referent replaced it.
    ([("usage", "doublons", None), ("usage", "dates", None)], Motif, "dates"),
], ids=["thematique", "sous-motif", "motif"])
def test_saving_a_call_whose_taxonomy_entry_was_retired_keeps_it(app, db, ref93, motifs, model, key):
    row = _qualified_call(db, motifs)
    db.scalars(select(model).where(model.key == key)).one().active = False
    db.commit()
    before = _qualification(db)
    fields = form_fields(ref93.get(f"/appels/{row.reference}").get_data(as_text=True))
    fields["commentaire"] = "rappelé le lendemain"  # the referent only adds a comment
    response = ref93.post(f"/appels/{row.reference}/qualifier", data=fields)
    assert response.status_code == 302, "saving the call's page but for a comment was refused"
    assert _qualification(db) == before, "the call's retired entry was dropped by the form"
    assert _rows(db)[0].comment == "rappelé le lendemain"


# --- 2. A local hour that does not exist, or exists twice, is stored as another instant -------

def test_adding_a_solicitation_in_the_hour_skipped_in_spring_is_refused(app, db, ref93):
    # 29 March 2026, Paris: clocks jump from 02:00 to 03:00; 02:30 never happened there.
    response = post_form(ref93, "/appels/nouvelle", {
        "departement": "93", "jour": "2026-03-29", "heure": "02:30", "canal": "email"})
    stored = [r.occurred_at.astimezone(PARIS).strftime("%H:%M") for r in _rows(db)]
    # Actual: 302, the row stored at 01:30 UTC, shown everywhere (list, workbook) at 03:30 —
    # an hour the referent did not type. The API refuses the same input with a 422
    # (api/solicitations._instant: « cette heure n'existe pas dans le fuseau du département »).
    assert response.status_code == 400 and stored == [], stored
    assert "heure" in response.get_data(as_text=True)


def test_adding_a_solicitation_in_the_hour_repeated_in_autumn_is_not_guessed(app, db, ref93):
    # 25 October 2026, Paris: 02:30 happens twice (00:30 and 01:30 UTC). The page silently
    # takes the first; the API refuses it (« cette heure existe deux fois ») and asks for the offset.
    response = post_form(ref93, "/appels/nouvelle", {
        "departement": "93", "jour": "2026-10-25", "heure": "02:30", "canal": "email"})
    rows = _rows(db)
    assert response.status_code == 400 and rows == [], [r.occurred_at for r in rows]


def test_the_api_refuses_the_same_skipped_hour(app, db):
    """The reference behaviour the page should share (passes today)."""
    from accounts.models import Role
    from tests.test_api import token_for
    headers = token_for(db, "ref93.b@example.gouv.fr", Role.referent, ["93"])
    response = app.test_client().post("/api/v1/solicitations", headers=headers, json={
        "departement": "93", "occurred_at": "2026-03-29T02:30:00", "channel": "email"})
    assert response.status_code == 422, response.get_json()
    assert datetime(2026, 3, 29, 1, 30, tzinfo=UTC) not in [r.occurred_at for r in _rows(db)]

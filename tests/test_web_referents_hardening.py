"""Defects a hostile review of « Mes appels », the dashboard and the downloads found."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from tests import factories
from tests.test_web_referents import _fill, ref93  # noqa: F401  (fixture)
from tests.webclient import form_fields
from tracking.models import Solicitation


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", [
    "/appels/?au=9999-12-31", "/appels/?du=0001-01-01",
    "/appels/?apres=" + _b64("2026-01-01T00:00:00+00:00|9223372036854775808"),
    "/appels/?apres=" + _b64("2026-01-01T00:00:00+00:00|" + "9" * 40),
    "/appels/?apres=" + _b64("0001-01-01T00:00:00+05:00|1"),
])
def test_absurd_filters_and_cursors_are_ignored(db, ref93, path):
    factories.call(db, departement="93")
    assert ref93.get(path).status_code == 200


@pytest.mark.parametrize("path, status", [
    ("/classeurs/9999-Q4/national.xlsx", 404), ("/classeurs/0001-Q1/national.xlsx", 404),
    ("/classeurs/2026-Q4/departement-96.xlsx", 404), ("/classeurs/2026-Q4/departement-20.xlsx", 404),
    ("/classeurs/?trimestre=0000-Q1", 200), ("/tableau-de-bord/?trimestre=9999-Q4", 200),
    ("/tableau-de-bord/?du=9999-12-01&au=9999-12-31", 200),
    ("/tableau-de-bord/75?du=0001-01-01&au=0001-01-31", 200),
])
def test_absurd_quarters_and_ranges_never_fail(admin, path, status):
    assert admin.get(path).status_code == status


def test_a_solicitation_in_an_implausible_year_is_refused_on_its_field(db, ref93):
    fields = form_fields(ref93.get("/appels/nouvelle").get_data(as_text=True))
    for day in ("0001-01-01", "1900-01-01", "9999-12-31"):
        _fill(fields, {"departement": "93", "jour": day, "heure": "10:00", "canal": "email"})
        response = ref93.post("/appels/nouvelle", data=fields)
        assert response.status_code == 400 and "hors des années 2000 à 2099" in response.get_data(as_text=True)
    assert db.scalars(select(Solicitation)).all() == []


def _qualify_form(client, db):
    call = factories.call(db, departement="93", thematique="usage")
    row = db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()
    url = f"/appels/{row.reference}"
    return call, url, form_fields(client.get(url).get_data(as_text=True))


def _motifs(db, call):
    db.expire_all()
    return [(r.thematique.key if r.thematique else None, r.motif.key if r.motif else None)
            for r in db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)
                                .order_by(Solicitation.id))]


def test_sending_the_same_qualification_twice_changes_nothing(db, ref93):
    call, url, fields = _qualify_form(ref93, db)
    _fill(fields, {"motifs-0-thematique": "usage", "motifs-0-motif": "usage/doublons",
                   "motifs-1-thematique": "habilitations", "motifs-1-motif": "habilitations/creation"})
    assert ref93.post(f"{url}/qualifier", data=fields).status_code == 302
    again = form_fields(ref93.get(url).get_data(as_text=True))  # the page, sent once more
    _fill(again, {"motifs-0-thematique": "usage", "motifs-0-motif": "usage/doublons",
                  "motifs-1-thematique": "habilitations", "motifs-1-motif": "habilitations/creation"})
    assert ref93.post(f"{url}/qualifier", data=again).status_code == 302
    assert _motifs(db, call) == [("usage", "doublons"), ("habilitations", "creation")]
    # Fewer motifs the next time: the extra row goes.
    fewer = form_fields(ref93.get(url).get_data(as_text=True))
    _fill(fewer, {"motifs-1-thematique": "", "motifs-1-motif": ""})
    assert ref93.post(f"{url}/qualifier", data=fewer).status_code == 302
    assert _motifs(db, call) == [("usage", "doublons")]


def test_a_form_older_than_someone_elses_qualification_is_refused(app, db, ref93):
    call, url, stale = _qualify_form(ref93, db)
    fresh = form_fields(ref93.get(url).get_data(as_text=True))
    _fill(fresh, {"motifs-0-thematique": "usage", "motifs-0-motif": "usage/doublons",
                  "motifs-1-thematique": "habilitations", "motifs-1-motif": "habilitations/creation"})
    assert ref93.post(f"{url}/qualifier", data=fresh).status_code == 302
    _fill(stale, {"motifs-0-thematique": "habilitations", "motifs-0-motif": "habilitations/connexion"})
    refused = ref93.post(f"{url}/qualifier", data=stale, follow_redirects=True)
    assert "qualifié entre-temps" in refused.get_data(as_text=True)
    assert _motifs(db, call) == [("usage", "doublons"), ("habilitations", "creation")]


def test_the_same_motif_twice_is_refused(db, ref93):
    call, url, fields = _qualify_form(ref93, db)
    _fill(fields, {"motifs-0-thematique": "usage", "motifs-0-motif": "usage/doublons",
                   "motifs-1-thematique": "usage", "motifs-1-motif": "usage/doublons"})
    response = ref93.post(f"{url}/qualifier", data=fields)
    assert response.status_code == 400 and "motif en double" in response.get_data(as_text=True)
    assert _motifs(db, call) == [("usage", None)]

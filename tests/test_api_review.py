"""The JSON API under a hostile review: each test reproduces a defect the review found (see its
docstring for what used to happen) and checks the fix, on SQLite and PostgreSQL.

Races are made deterministic with a threading.Barrier placed (by monkeypatch) between the check
and the write: the window exists without it, the barrier only makes the interleaving certain.
"""

from __future__ import annotations

import base64
import threading

import pytest
from sqlalchemy import create_engine, func, select, update

from accounts import tokens
from accounts.models import ApiToken, Role, User
from directory import settings as directory_settings
from directory.models import Departement
from tests import factories
from tests.test_api import AT, api, token_for  # noqa: F401  (fixture)
from tests.webclient import csrf_token, login, make_user
from tracking import solicitations
from tracking.models import Solicitation
from web import downloads

TWO_MOTIFS = [{"thematique": "usage", "motif": "doublons"},
              {"thematique": "usage", "motif": "saisie"}]


def _backend(app) -> str:
    return "sqlite" if app.config["DATABASE_URL"].startswith("sqlite") else "postgresql"


def _directory_body(client, headers, code="93") -> dict:
    current = client.get(f"/api/v1/departements/{code}", headers=headers).json
    return {k: v for k, v in current.items() if k not in ("code", "name", "timezone")}


def _call_row(db) -> Solicitation:
    call = factories.call(db, departement="93", started_at=AT)
    return db.scalars(select(Solicitation).where(Solicitation.call_id == call.id)).one()


# --- 1. a read-only GET holds a write lock for its whole duration ------------------------------

def _other_writer(app, national_id: int) -> str:
    """Another connection tries a small write, waiting at most 0.5 s for a lock. On SQLite, a
    write to an unrelated table (the lock is the whole database's); on PostgreSQL, to the
    token's own row (what `flask tokens revoke` or the « Mes jetons » page would do)."""
    url = app.config["DATABASE_URL"]
    if _backend(app) == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 0.5})
        stmt = update(Departement).where(Departement.code == "01").values(
            version=Departement.version)
    else:
        engine = create_engine(url, connect_args={"options": "-c lock_timeout=500"})
        stmt = update(ApiToken).where(ApiToken.user_id == national_id).values(name=ApiToken.name)
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported in the assertion
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


def test_a_token_lookup_holds_no_write_lock_during_the_request(api, app, db, monkeypatch):
    """`tokens.owner` flushes `last_used_at` at the start of the request (every 5 minutes per
    token), inside the request's transaction, which is committed only after the view: a GET of
    a workbook generated on demand (≈ 3,600 rows/s, so a minute or more for a national quarter)
    holds SQLite's write lock all along (every writer of the app waits, then fails with
    « database is locked »), and on PostgreSQL the token row stays locked (a revoke hangs).
    The same download through the web page holds no lock."""
    seen = {}
    real = downloads.export_workbook
    national_id = db.scalar(select(User.id).where(User.email == "nat.api@example.gouv.fr"))

    def spy(*args, **kwargs):
        seen["writer"] = _other_writer(app, national_id)
        return real(*args, **kwargs)

    monkeypatch.setattr(downloads, "export_workbook", spy)
    response = api.client.get("/api/v1/workbooks/2026-Q4/national.xlsx", headers=api.national)
    assert response.status_code == 200
    assert seen["writer"] == "ok", seen["writer"]


# --- 2. qualification: check-then-write race ---------------------------------------------------

def test_two_racing_qualifications_are_serialized(api, app, db, monkeypatch):
    """Two identical PUT …/qualification with the same `version` (a client retrying after a
    timeout while the first is still running): the version is compared in Python, then rows are
    written, with nothing locking the call in between. Both answer 200 and the call ends with 3
    rows for 2 motifs (the second motif twice). Expected: one 200, the other 409 (or the same 2
    rows)."""
    row = _call_row(db)
    version = api.client.get(f"/api/v1/solicitations/{row.reference}",
                             headers=api.ref93).json["version"]
    barrier = threading.Barrier(2, timeout=5)
    real = solicitations.qualify_motifs

    def after_the_check(session, target, *args, **kwargs):
        solicitations.rows_of_call(session, target)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return real(session, target, *args, **kwargs)

    monkeypatch.setattr(solicitations, "qualify_motifs", after_the_check)
    statuses = []

    def put():
        with app.test_client() as client:
            statuses.append(client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                                       json={"motifs": TWO_MOTIFS, "version": version},
                                       headers=api.ref93).status_code)

    threads = [threading.Thread(target=put) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count = db.scalar(select(func.count()).select_from(Solicitation)
                      .where(Solicitation.call_id == row.call_id))
    assert count == 2, (statuses, count)
    assert sorted(statuses) == [200, 409]


# --- 3. a manual solicitation with several motifs grows at each PUT ---------------------------

def test_a_solicitation_without_call_takes_one_motif_and_creates_no_orphan(api, db):
    """PUT …/qualification with 2 motifs on a solicitation added by POST (no call) used to add an
    unlinked row at every resend. A row without a call takes one motif (422 naming why, nothing
    written); one motif, sent three times, changes nothing after the first."""
    added = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "93", "occurred_at": "2026-11-20T10:15:00", "channel": "email"})
    assert added.status_code == 201
    reference = added.json["reference"]
    refused = api.client.put(f"/api/v1/solicitations/{reference}/qualification",
                             json={"motifs": TWO_MOTIFS}, headers=api.ref93)
    assert refused.status_code == 422 and "un seul motif" in refused.json["detail"]
    for _ in range(3):
        done = api.client.put(f"/api/v1/solicitations/{reference}/qualification",
                              json={"motifs": TWO_MOTIFS[:1]}, headers=api.ref93)
        assert done.status_code == 200
    assert done.json["rows"] == [reference]
    assert db.scalar(select(func.count()).select_from(Solicitation)) == 1


# --- 4. the same motif twice, once by key and once by label -----------------------------------

@pytest.mark.parametrize("second", [{"thematique": "Usage du SI", "motif": "Traitement des doublons"},
                                    {"thematique": "USAGE", "motif": "DOUBLONS"},
                                    {"thematique": " usage", "motif": "doublons "}])
def test_a_duplicate_motif_spelt_differently_is_refused(api, db, second):
    """`qualify_motifs` refuses duplicates by comparing the raw strings, but the taxonomy resolves
    keys and labels case-insensitively: the same motif twice gives 200 and two identical rows.
    Expected 422 « motif en double ». Fix: compare the resolved ids (tracking/solicitations.py)."""
    row = _call_row(db)
    response = api.client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                              json={"motifs": [{"thematique": "usage", "motif": "doublons"}, second]},
                              headers=api.ref93)
    assert response.status_code == 422, response.json


# --- 5. PostgreSQL: 500s from values the API lets through -------------------------------------

def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_a_cursor_with_an_id_beyond_32_bits_is_refused(api, db):
    """`listing.decode_cursor` accepts ids up to 2**63, the column is a 32-bit integer: PostgreSQL
    raises NumericValueOutOfRange → 500 (same on « Mes appels » `?apres=`). Expected 422
    « curseur invalide ». Fix: bound the id to 2**31 - 1 in decode_cursor."""
    factories.call(db, departement="93", started_at=AT)
    response = api.client.get("/api/v1/solicitations?after="
                              + _cursor("2026-11-16T09:30:00+00:00|4611686018427387904"),
                              headers=api.national)
    assert response.status_code in (200, 422), response.json


@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/solicitations/S-%00"),
    ("get", "/api/v1/departements/%00"),
    ("put", "/api/v1/solicitations/S-%00/qualification"),
])
def test_a_nul_byte_in_a_path_parameter_is_a_404(api, method, path):
    """Path parameters (`reference`, `code`) go to the database unchecked; PostgreSQL refuses a
    NUL in a string → 500 (query parameters and bodies are checked by the text policy, paths
    are not). Expected 404."""
    body = {"motifs": TWO_MOTIFS} if method == "put" else None
    response = getattr(api.client, method)(path, json=body, headers=api.admin)
    assert response.status_code == 404, response.json


# --- 6. deeply nested JSON --------------------------------------------------------------------

def test_deeply_nested_json_is_a_400(api):
    """100,000 nested brackets: json.loads raises RecursionError, which webargs does not catch
    (it handles only JSONDecodeError) → 500 and a traceback in the log, for any token holder.
    Expected 400 problem+json."""
    response = api.client.post("/api/v1/solicitations", data="[" * 100000 + "]" * 100000,
                               content_type="application/json", headers=api.ref93)
    assert response.status_code == 400, response.json


# --- 7. an offset pushes the instant out of the plausible years -------------------------------

def test_an_extreme_offset_is_refused(api, db):
    """`occurred_at` is checked for a plausible year *before* conversion: 2000-01-01T00:00+14:00
    is stored as 1999-12-31T10:00Z (and +23:59 offsets are accepted too). The list's cursor of a
    page ending on such a row is then refused by decode_cursor (year 1999) → 422 « curseur
    invalide » for everyone reading the département: a referent can break the list. Expected:
    the POST refused (422), or pages that still follow."""
    for _ in range(2):
        added = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
            "departement": "93", "occurred_at": "2000-01-01T00:00:00+14:00", "channel": "email"})
        if added.status_code == 422:
            return  # refused: fixed at the door
        assert added.status_code == 201
    first = api.client.get("/api/v1/solicitations?limit=1", headers=api.national)
    assert first.status_code == 200 and first.json["next"]
    second = api.client.get(f"/api/v1/solicitations?limit=1&after={first.json['next']}",
                            headers=api.national)
    assert second.status_code == 200, second.json


# --- 8. directory PUT: no-op saves move the version; identical saves audit changes -----------

def test_a_put_that_changes_nothing_keeps_the_version(api, db):
    """Admin A reads 93 (version v). Admin B's client PUTs the GET output unchanged: 200,
    `changes: []`, no audit entry, but `settings.save` still moves the version (`_bump` is used
    to check it). A's real edit with v is then refused 409, « modifié entre-temps par <the last
    audited author> », although nobody changed anything. Expected: an unchanged save checks the
    version without moving it."""
    admin_b = token_for(db, "admin.b@example.gouv.fr", Role.admin)
    body_a = _directory_body(api.client, api.admin)
    unchanged = api.client.put("/api/v1/departements/93", json=_directory_body(api.client, admin_b),
                               headers=admin_b)
    assert unchanged.status_code == 200 and unchanged.json["changes"] == []
    edit = api.client.put("/api/v1/departements/93", json=dict(body_a, ring_timeout=25),
                          headers=api.admin)
    assert edit.status_code == 200, edit.json


def test_the_same_put_sent_again_changes_nothing(api, db):
    """Text with inner double spaces (a closure's reason, form_url) is stored as sent, but read
    back normalized (`settings.of` → `_normal`): the same body sent again differs from what is
    read, so every resend is a « change » (audit entry, version moved, 409 for others), for
    ever. Expected: the second identical PUT answers `changes: []`. Fix: normalize in
    api/directory._settings_from (as the reading side does)."""
    body = _directory_body(api.client, api.admin)
    body["form_url"] = "https://exemple.gouv.fr/a  b"
    body["closures"] = [{"start_date": "2026-12-24", "end_date": "2026-12-26",
                         "reason": "Noël  fermé"}]
    first = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert first.status_code == 200
    body["version"] = first.json["departement"]["version"]
    again = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert again.status_code == 200 and again.json["changes"] == [], again.json["changes"]


@pytest.mark.parametrize("field,value", [("ring_timeout", 25.9), ("ring_timeout", "25"),
                                         ("phone_assistance", "on"),
                                         ("slots", [{"weekday": 0.7, "start": "09:00",
                                                     "end": "12:00"}])])
def test_floats_and_strings_are_not_coerced(api, field, value):
    """marshmallow's non-strict Integer truncates 25.9 to 25 and 0.7 to 0 (Monday), takes "25";
    Boolean takes "on", "1", "yes"…: a client's bug is saved instead of named. Same for
    `version` (3.9 passes as 3). Expected 422. Fix: strict fields for JSON bodies
    (api/fields.py)."""
    body = _directory_body(api.client, api.admin)
    body[field] = value
    response = api.client.put("/api/v1/departements/93", json=body, headers=api.admin)
    assert response.status_code == 422, response.json.get("changes")


# --- 9. qualification through a secondary row ------------------------------------------------

def test_qualifying_through_a_secondary_row_answers_with_the_first_row(api, db):
    """A call split in 2 rows; PUT …/qualification on the *second* row's reference with one
    motif: the second row is deleted as surplus, yet the 200 answer describes it (its reference,
    `rows` not containing it), and GET on that reference is then 404. Expected: the answer
    describes a row that exists (the call's first row), or the addressed row is kept."""
    row = _call_row(db)
    split = api.client.put(f"/api/v1/solicitations/{row.reference}/qualification",
                           json={"motifs": TWO_MOTIFS}, headers=api.ref93).json
    second = next(r for r in split["rows"] if r != row.reference)
    done = api.client.put(f"/api/v1/solicitations/{second}/qualification",
                          json={"motifs": TWO_MOTIFS[:1]}, headers=api.ref93)
    assert done.status_code == 200
    assert done.json["reference"] in done.json["rows"]
    assert api.client.get(f"/api/v1/solicitations/{done.json['reference']}",
                          headers=api.ref93).status_code == 200


# --- 10. body size -----------------------------------------------------------------------------

def test_the_api_refuses_bodies_over_its_own_limit(api):
    """MAX_CONTENT_LENGTH (64 MB, meant for uploads) is the API's only limit: a 10 MB body of
    motifs is parsed and every item validated before `max_items` refuses it (≈ 2.5 s of CPU
    here; 60 MB ≈ 15 s), from any token, on a 2-core host. Expected 413 well before (an API
    body is a few KB). Fix: a per-request limit for /api/ (request.max_content_length)."""
    motifs = b'{"thematique":"usage","motif":"doublons"},' * 250000
    response = api.client.put("/api/v1/solicitations/S-0000000000/qualification",
                              data=b'{"motifs":[' + motifs + b'{}]}',
                              content_type="application/json", headers=api.ref93)
    assert response.status_code == 413


# --- 11. problem+json completeness -------------------------------------------------------------

def test_invalid_json_and_too_large_problems_are_french_and_detailed(api):
    """A malformed body answers 400 `errors: {"json": ["Invalid JSON body."]}` — English, no
    `detail`; 413 has no `detail` either. README: every error has a French title and detail."""
    bad = api.client.post("/api/v1/solicitations", data="{", content_type="application/json",
                          headers=api.ref93)
    assert bad.status_code == 400
    assert "Invalid" not in str(bad.json) and bad.json.get("detail"), bad.json
    big = api.client.post("/api/v1/solicitations", data=b"x" * (65 * 1024 * 1024),
                          content_type="application/json", headers=api.ref93)
    assert big.status_code == 413 and big.json.get("detail"), big.json


def test_a_non_json_body_is_415(api):
    """PUT with Content-Type text/plain (or a form) answers 422 « champ obligatoire » for every
    field, which sends the client looking for wrong fields; 415 (« envoyez du JSON ») is in
    TITLES/DETAILS but never raised."""
    response = api.client.post("/api/v1/solicitations", data='{"departement": "93"}',
                               content_type="text/plain", headers=api.ref93)
    assert response.status_code == 415


def test_an_unknown_thematique_on_post_names_the_field_sent(api):
    """POST /solicitations with an unknown `thematique`: the error is filed under
    `errors.json.motifs`, a field NewSolicitation does not have (`_refused` hard-codes it).
    Expected under `thematique`."""
    response = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "93", "occurred_at": "2026-11-20T10:15:00", "channel": "email",
        "thematique": "inconnue"})
    assert response.status_code == 422
    assert set(response.json["errors"]["json"]) <= {"thematique", "motif", "sous_motif"}, \
        response.json["errors"]


# --- 12. local times that do not exist ---------------------------------------------------------

def test_a_local_time_in_a_dst_gap_or_overlap_is_refused(api):
    """`occurred_at` without offset is the département's local time; 2026-03-29T02:30 does not
    exist in Paris (clocks jump 02:00 → 03:00): it is stored silently as 01:30Z, answered as
    « 02:30+01:00 », and GET later says 03:30+02:00. Expected 422 naming the DST gap (and the
    ambiguous 2026-10-25T02:30 at least documented)."""
    response = api.client.post("/api/v1/solicitations", headers=api.ref93, json={
        "departement": "93", "occurred_at": "2026-03-29T02:30:00", "channel": "email"})
    assert response.status_code == 422


# --- 13. tokens --------------------------------------------------------------------------------

def test_two_simultaneous_token_forms_create_one_token(app, db, monkeypatch):
    """A double click on « Créer » (two POSTs at once): the « one active name » check is a Python
    read, with no constraint or lock behind it: both pass and two active tokens share the name
    (README: « a reloaded form creates nothing »). Fix: lock the user's row in tokens.create, or
    a unique index."""
    make_user(db, "double.clic@example.gouv.fr", Role.national)
    clients = []
    for _ in range(2):
        client = app.test_client()
        login(client, "double.clic@example.gouv.fr")
        clients.append((client, csrf_token(client, "/mon-compte/jetons/")))
    barrier = threading.Barrier(2, timeout=5)
    real = tokens.active

    def checked(*args, **kwargs):
        found = real(*args, **kwargs)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(tokens, "active", checked)

    def submit(client, csrf):
        client.post("/mon-compte/jetons/", data={"name": "BI", "days": "30", "csrf_token": csrf})

    threads = [threading.Thread(target=submit, args=c) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.scalars(select(ApiToken.name)).all() == ["BI"]


def test_last_used_is_recorded_when_the_request_is_refused(api, db):
    """`last_used_at` is flushed in the request's transaction, rolled back on any status ≥ 400: a
    token used only for refused requests (a leaked one being tried on other départements, a
    misconfigured tool getting 403/422) shows « never used ». Expected: recorded on use."""
    assert api.client.get("/api/v1/departements/75", headers=api.ref93).status_code == 403
    db.expire_all()
    owner = db.scalar(select(User.id).where(User.email == "ref93.api@example.gouv.fr"))
    assert db.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == owner)) is not None


# --- 14. OpenAPI -------------------------------------------------------------------------------

def test_the_workbook_answer_is_described_in_the_openapi_document(app):
    """GET /api/v1/workbooks/{quarter}/{name}: the 200 answer has a description but no
    `content`: the document says it has no body, while it is an xlsx file. Fix: document
    `content: {XLSX: {schema: {type: string, format: binary}}}` (api/workbooks.py)."""
    spec = app.test_client().get("/api/openapi.json").json
    ok = spec["paths"]["/api/v1/workbooks/{quarter}/{name}"]["get"]["responses"]["200"]
    assert downloads.XLSX in ok.get("content", {}), ok

"""Prompts edited by admins (« Messages »): through the real pages, heard on the next real call
(national, per département, recordings), placeholders and uploads validated, audited."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

import prompts
from accounts.models import Role
from app import create_app
from audit.models import AuditEntry
from audit.operations import Actor
from ivr.simulator import Emulator, FlaskTransport, Referent
from prompts import operations
from prompts.models import PromptOverride
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.helpers import count_selects, heard
from tests.webclient import csrf_token, login, make_user

#: A valid MPEG-1 Layer III frame header behind an empty ID3v2.4 tag, then silence.
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)
WAV = (b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
       + bytes.fromhex("01000100401f0000803e000002001000") + b"data" + bytes(4))
AUDIO_URL = re.compile(r"<Play>https://svi\.example\.gouv\.fr/prompts/audio/([0-9a-f]{32}\.(mp3|wav))</Play>")


@pytest.fixture
def admin(app, db, tmp_path):
    app.instance_path = str(tmp_path)  # recordings land in a folder of the test's own
    make_user(db, "admin@example.gouv.fr", Role.admin)
    client = app.test_client()
    assert login(client, "admin@example.gouv.fr").status_code == 302
    return client


def _save_text(client, name, text, departement="", action="enregistrer"):
    page = f"/admin/messages/{name}" + (f"?departement={departement}" if departement else "")
    return client.post(f"/admin/messages/{name}", data={
        "csrf_token": csrf_token(client, page), "departement": departement, "texte": text,
        "action": action})


def _upload(client, name, data, filename, departement="", action="envoyer"):
    page = f"/admin/messages/{name}" + (f"?departement={departement}" if departement else "")
    return client.post(f"/admin/messages/{name}/enregistrement", data={
        "csrf_token": csrf_token(client, page), "departement": departement, "action": action,
        "fichier": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def _audit(db, summary_part):
    db.expire_all()
    return [e for e in db.scalars(select(AuditEntry).where(AuditEntry.entity == "message"))
            if summary_part in e.summary]


def test_a_prompt_edited_nationally_is_heard_on_the_next_call_and_can_be_restored(admin, db, twilio):
    before = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert heard(before).startswith("Bonjour")  # the welcome document is now in the memo
    listing = admin.get("/admin/messages").get_data(as_text=True)
    assert "Accueil, au début de chaque appel." in listing and "{horaires}" in listing
    response = _save_text(admin, "welcome", "Bienvenue à l'assistance   du système\r\nd'information.")
    assert response.status_code == 302, response.get_data(as_text=True)
    after = twilio.call(caller="+33612345679", keys=["75"], referents=[Referent("accept")])
    assert after.heard[0] == "Bienvenue à l'assistance du système d'information."
    assert "Bonjour" not in heard(after), "the memo served the text from before the edit"
    [entry] = _audit(db, "welcome")
    assert entry.actor == "utilisateur:admin@example.gouv.fr" and entry.departement_code is None
    assert entry.changes["texte"] == [prompts.text("welcome"),
                                      "Bienvenue à l'assistance du système d'information."]
    assert "national" in admin.get("/admin/messages").get_data(as_text=True)

    page = admin.get("/admin/messages/welcome").get_data(as_text=True)
    assert "Rétablir le texte d'origine" in page
    assert _save_text(admin, "welcome", "", action="retablir").status_code == 302
    again = twilio.call(caller="+33612345670", keys=["75"], referents=[Referent("accept")])
    assert again.heard[0].startswith("Bonjour")
    assert _audit(db, "texte d'origine rétabli")
    assert db.scalars(select(PromptOverride)).all() == []


def test_a_departement_override_wins_for_that_departement_only(admin, db, twilio):
    assert _save_text(admin, "connecting", "Un instant : nous appelons l'assistance {nom}.").status_code == 302
    assert _save_text(admin, "connecting", "Patientez, l'équipe {nom} arrive.",
                      departement="93").status_code == 302
    t93 = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[Referent("accept")])
    t75 = twilio.call(caller="+33612345679", keys=["75", "1", "1"], referents=[Referent("accept")])
    assert "Patientez, l'équipe Seine-Saint-Denis arrive." in t93.heard
    assert "Un instant : nous appelons l'assistance Paris." in t75.heard
    assert not any("Patientez" in line for line in t75.heard)
    [entry] = _audit(db, "(département 93)")
    assert entry.departement_code == "93"
    page = admin.get("/admin/messages/connecting?departement=93").get_data(as_text=True)
    assert "Revenir au texte national" in page and "Patientez" in page
    # The département follows the national text again once its own is removed.
    assert _save_text(admin, "connecting", "", departement="93", action="retablir").status_code == 302
    again = twilio.call(caller="+33612345670", keys=["93", "1", "1"], referents=[Referent("accept")])
    assert "Un instant : nous appelons l'assistance Seine-Saint-Denis." in again.heard


@pytest.mark.parametrize("text, message", [
    ("Elle vous répond aux heures habituelles.", "Valeur manquante : {horaires}"),
    ("Elle vous répond {horaires}, {heure} et {jour}.", "Valeurs inconnues : {heure}, {jour}"),
    ("Elle vous répond {horaires.", "Accolades mal formées"),
    ("Elle vous répond {horaires!r}.", "Accolades mal formées"),
    ("Elle vous répond {horaires}\x07.", "U+0007"),
])
def test_a_text_losing_or_inventing_a_placeholder_is_refused_naming_it(admin, db, twilio, text, message):
    response = _save_text(admin, "opening_hours", text)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(r'<p id="texte-erreur" class="fr-error-text">([^<]*)</p>', page)
    assert error and message in error.group(1).replace("&#39;", "'"), page
    assert 'aria-describedby="texte-erreur"' in page
    assert db.scalars(select(PromptOverride)).all() == [] and _audit(db, "") == []


def test_a_file_that_is_not_audio_is_refused_and_an_oversized_one_too(admin, db, tmp_path):
    response = _upload(admin, "welcome", b"<html><script>alert(1)</script></html>", "accueil.mp3")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "pas un enregistrement MP3 ou WAV" in page
    assert 'aria-describedby="fichier-erreur"' in page
    big = MP3 + bytes(operations.MAX_AUDIO_BYTES)
    response = _upload(admin, "welcome", big, "accueil.mp3")
    assert response.status_code == 400 and "dépasse 5 Mo" in response.get_data(as_text=True)
    assert db.scalars(select(PromptOverride)).all() == []
    assert not (tmp_path / "prompts").exists() or not any((tmp_path / "prompts").iterdir())


def test_an_uploaded_mp3_is_played_instead_of_speech_then_removed(app, admin, db, twilio, tmp_path):
    response = _upload(admin, "welcome", MP3, "../../accueil enregistré.mp3")
    assert response.status_code == 302, response.get_data(as_text=True)
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    played = AUDIO_URL.search(t.twiml[0])
    assert played and "Bonjour" not in t.twiml[0]
    filename = played.group(1)
    assert (tmp_path / "prompts" / filename).read_bytes() == MP3  # our random name, not theirs
    served = app.test_client().get(f"/prompts/audio/{filename}")
    assert served.status_code == 200 and served.data == MP3 and served.mimetype == "audio/mpeg"
    assert app.test_client().get("/prompts/audio/../prompts.sqlite3").status_code == 404
    [entry] = _audit(db, "enregistrement ajouté")
    assert "accueil enregistré.mp3" in entry.changes["enregistrement"][1]

    assert _upload(admin, "welcome", b"", "", action="supprimer").status_code == 302
    assert not (tmp_path / "prompts" / filename).exists()  # deleted once committed
    again = twilio.call(caller="+33612345679", keys=["75"], referents=[Referent("accept")])
    assert again.heard[0].startswith("Bonjour") and "<Play>" not in again.twiml[0]
    assert _audit(db, "enregistrement supprimé")


def test_a_departement_recording_wins_over_the_national_text(admin, twilio):
    national = "Vous avez choisi {departement}, {nom}. Tapez 1 pour confirmer, 2 pour corriger."
    assert _save_text(admin, "confirm_departement", national).status_code == 302
    assert _upload(admin, "confirm_departement", WAV, "confirmation.wav",
                   departement="93").status_code == 302
    t93 = twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[Referent("accept")])
    t75 = twilio.call(caller="+33612345679", keys=["75", "1", "1"], referents=[Referent("accept")])
    assert any(AUDIO_URL.fullmatch(f"<Play>{line}</Play>") for line in t93.heard)
    assert "Vous avez choisi 75, Paris. Tapez 1 pour confirmer, 2 pour corriger." in t75.heard
    assert not any("/prompts/audio/" in line for line in t75.heard)


def test_audio_is_recognized_by_its_content():
    assert operations.audio_kind(MP3) == "mp3"
    assert operations.audio_kind(MP3[10:]) == "mp3"  # a bare frame, no tag
    assert operations.audio_kind(WAV) == "wav"
    assert operations.audio_kind(b"ID3\x04\x00\x00\x00\x00\x00\x00not a frame") is None
    assert operations.audio_kind(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(40)) is None
    assert operations.audio_kind(b"\xff\xfb\xf0\x64") is None  # bitrate index 15 is invalid


def test_every_prompt_has_a_french_description():
    described = prompts.descriptions()
    assert set(described["prompts"]) == set(prompts.catalogue())
    used = set().union(*(prompts.placeholders(name) for name in prompts.catalogue()))
    assert used <= set(described["placeholders"])


def test_overrides_are_read_once_per_directory_version_not_per_webhook(app, admin, twilio):
    selects = count_selects(app.extensions["svi.voice_engine"], "prompt_overrides")
    twilio.call(caller="+33612345678", keys=["93", "1", "1"], referents=[Referent("accept")])
    first = len(selects)
    assert first <= 1
    twilio.call(caller="+33612345679", keys=["93", "1", "1"], referents=[Referent("accept")])
    assert len(selects) == first, "the overrides were read again although nothing changed"
    assert _save_text(admin, "welcome", "Bienvenue.").status_code == 302
    t = twilio.call(caller="+33612345670", keys=["93", "1", "1"], referents=[Referent("accept")])
    twilio.call(caller="+33612345671", keys=["93", "1", "1"], referents=[Referent("accept")])
    assert t.heard[0] == "Bienvenue." and len(selects) == first + 1


def test_an_edit_made_elsewhere_is_heard_in_another_worker(app, db):
    """Two app instances on one database stand for two gunicorn workers; the edit is the CLI's."""
    other_worker = create_app(dict(app.config))
    twilio_other = Emulator(FlaskTransport(other_worker), auth_token=AUTH_TOKEN,
                            public_base=PUBLIC_BASE)
    assert twilio_other.call(caller="+33612345678", keys=["75"]).heard[0].startswith("Bonjour")
    operations.set_text(db, Actor.cli(), "welcome", "Bonsoir et bienvenue.")
    db.commit()
    assert twilio_other.call(caller="+33612345679", keys=["75"]).heard[0] == "Bonsoir et bienvenue."
    other_worker.extensions["svi.engine"].dispose()
    other_worker.extensions["svi.voice_engine"].dispose()


def test_the_preview_says_the_edited_text(app, db):
    from prompts import operations as prompt_ops
    from audit.operations import Actor
    from tests.webclient import login, make_user
    from accounts.models import Role
    prompt_ops.set_text(db, Actor.cli(), "welcome", "Bienvenue à l'assistance, version testée.")
    db.commit()
    make_user(db, "admin2@example.gouv.fr", Role.admin)
    client = app.test_client()
    login(client, "admin2@example.gouv.fr")
    page = client.get("/apercu?departement=93&day=2026-12-21&at=10:00&caller=nouveau"
                      "&thematique=&referent=accept&voicemail=0").get_data(as_text=True)
    assert "version testée" in page

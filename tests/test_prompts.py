"""Prompts: every sentence in French with known placeholders; recordings replace speech."""

import pytest

import prompts
from callflows.definition import KNOWN_PLACEHOLDERS
from ivr.simulator import Referent
from ivr.twiml import forget_rendered


def test_every_prompt_uses_only_placeholders_the_engine_fills():
    for name in prompts.catalogue():
        assert prompts.placeholders(name) <= KNOWN_PLACEHOLDERS, name
    with pytest.raises(prompts.PromptError, match="valeur manquante"):
        prompts.render("confirm_departement", {"departement": "93"})
    with pytest.raises(prompts.PromptError, match="prompt inconnu"):
        prompts.text("nope")


@pytest.fixture
def recorded_welcome(tmp_path, monkeypatch):
    (tmp_path / "welcome.mp3").write_bytes(b"ID3fake-mp3")
    monkeypatch.setattr(prompts, "AUDIO_DIR", tmp_path)
    prompts.audio_file.cache_clear()
    forget_rendered()
    yield
    prompts.audio_file.cache_clear()
    forget_rendered()


def test_a_recording_named_like_a_prompt_is_played_instead(app, twilio, recorded_welcome):
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    first = t.twiml[0]
    assert "<Play>https://svi.example.gouv.fr/prompts/audio/welcome.mp3</Play>" in first
    assert "Bonjour" not in first
    assert '<Say language="fr-FR" voice="Polly.Lea">Tapez le numéro' in first
    client = app.test_client()
    resp = client.get("/prompts/audio/welcome.mp3")
    assert resp.status_code == 200 and resp.data == b"ID3fake-mp3"
    assert client.get("/prompts/audio/../app.py").status_code == 404
    assert client.get("/prompts/audio/missing.mp3").status_code == 404


def test_voice_and_language_are_configurable(app, twilio):
    app.config.update(SVI_VOICE="alice", SVI_LANGUAGE="fr-CA")
    t = twilio.call(caller="+33612345678", keys=["75"], referents=[Referent("accept")])
    assert '<Say language="fr-CA" voice="alice">' in t.twiml[0]

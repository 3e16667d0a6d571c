"""Settings: defaults, environment, fail-fast in production, .env.example complete."""

from pathlib import Path

import pytest

from core import settings
from core.privacy import caller_hash, mask_number

ROOT = Path(__file__).resolve().parent.parent


def test_environment_overrides_defaults_and_is_typed(tmp_path):
    cfg = settings.load(str(tmp_path), environ={"SVI_CALL_TIME_LIMIT": "600",
                                                "SVI_ALLOW_SIMULATED_TIME": "yes"})
    assert cfg["SVI_CALL_TIME_LIMIT"] == 600 and cfg["SVI_ALLOW_SIMULATED_TIME"] is True
    assert cfg["DATABASE_URL"] == f"sqlite:///{tmp_path / 'svi.sqlite3'}"
    with pytest.raises(settings.SettingsError, match="SVI_CALL_TIME_LIMIT doit être un nombre entier"):
        settings.load(str(tmp_path), environ={"SVI_CALL_TIME_LIMIT": "quinze"})


def test_production_fails_fast_without_its_secrets(tmp_path):
    with pytest.raises(settings.SettingsError) as err:
        settings.load(str(tmp_path), environ={"SVI_ENV": "production", "SECRET_KEY": "s"})
    for name in ("DATABASE_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "PUBLIC_BASE_URL",
                 "SVI_CALLER_ID"):
        assert name in str(err.value)
    complete = {"SVI_ENV": "production", "SECRET_KEY": "s", "DATABASE_URL": "postgresql://x/y",
                "TWILIO_AUTH_TOKEN": "t", "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
                "PUBLIC_BASE_URL": "https://svi.gouv.fr/", "SVI_CALLER_ID": "+33806000156"}
    assert settings.load(str(tmp_path), environ=complete)["PUBLIC_BASE_URL"] == "https://svi.gouv.fr"
    for wrong in ("AC123", "SK" + "0123456789abcdef" * 2, "AC" + "0123456789ABCDEF" * 2):
        with pytest.raises(settings.SettingsError, match="TWILIO_ACCOUNT_SID doit être"):
            settings.load(str(tmp_path), environ=dict(complete, TWILIO_ACCOUNT_SID=wrong))
    with pytest.raises(settings.SettingsError, match="SVI_ALLOW_SIMULATED_TIME"):
        settings.load(str(tmp_path), environ=dict(complete, SVI_ALLOW_SIMULATED_TIME="1"))
    for typo in ("prod", "Production"):  # would silently skip every check above
        with pytest.raises(settings.SettingsError, match="SVI_ENV doit valoir"):
            settings.load(str(tmp_path), environ={"SVI_ENV": typo})


def test_env_example_documents_every_setting():
    documented = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert documented == set(settings.DEFAULTS)


def test_caller_numbers_are_hashed_with_a_key_and_masked():
    assert caller_hash("+33612345678", "k1") != caller_hash("+33612345678", "k2")
    assert caller_hash("+33612345678", "k1") == caller_hash(" +33612345678 ", "k1")
    assert caller_hash("anonymous", "k1") is None and caller_hash("", "k1") is None
    assert mask_number("+33612345678") == "+336••••••78"
    assert mask_number("Anonymous") == "masqué"

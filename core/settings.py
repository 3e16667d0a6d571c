"""One settings module: defaults, overridden by environment variables, then by test config."""

from __future__ import annotations

import os
from pathlib import Path

#: Every setting the service reads, with its default. `.env.example` documents each one.
DEFAULTS: dict[str, object] = {
    "SVI_ENV": "development",  # "production" turns on fail-fast checks
    "DATABASE_URL": "",  # empty: SQLite under instance/
    "SECRET_KEY": "",
    "CALLER_HASH_KEY": "",  # key of the caller-number hash; defaults to SECRET_KEY
    "TWILIO_AUTH_TOKEN": "",  # empty: webhook signatures are not checked (development only)
    "PUBLIC_BASE_URL": "",  # e.g. https://svi.example.gouv.fr ; empty: the request's own URL
    "SVI_CALLER_ID": "",  # number shown to referents on forwarded calls (E.164)
    "SVI_VOICE": "Polly.Lea",
    "SVI_LANGUAGE": "fr-FR",
    "SVI_FORM_URL": "assistance.example.gouv.fr",
    "SVI_CALL_TIME_LIMIT": 900,  # seconds; a forwarded call is cut after 15 minutes
    "SVI_RETURNING_CALLER_DAYS": 90,
    "SVI_CALLER_RETENTION_DAYS": 365,  # caller hash and masked number are erased after this
    "SVI_VOICEMAIL_MAX_SECONDS": 120,
    "SVI_FLOW_FILE": "",  # empty: callflows/main.yaml
    "SVI_ALLOW_SIMULATED_TIME": False,  # honour the `at` URL parameter (simulator only)
    "LOG_LEVEL": "INFO",
    "SMTP_HOST": "",  # empty: no SMTP, messages are written as .eml files to MAIL_OUTBOX_DIR
    "SMTP_PORT": 25,
    "SMTP_USERNAME": "",  # empty: no SMTP authentication
    "SMTP_PASSWORD": "",
    "SMTP_STARTTLS": False,
    "SMTP_TIMEOUT": 10,  # seconds
    "MAIL_FROM": "svi-noreply@example.gouv.fr",
    "MAIL_OUTBOX_DIR": "",  # empty: instance/outbox
    "NATIONAL_TEAM_EMAILS": "",  # comma-separated; receives the quarterly workbook links
    "WORKBOOK_STORAGE_DIR": "",  # empty: instance/workbooks
    "JOURNAL_DIR": "",  # empty: instance/journal; calls recorded while the database was unavailable
    "MAX_UPLOAD_BYTES": 64 * 1024 * 1024,  # largest request body (uploads); webhooks: 64 KB
}

_BOOLEAN = {"SVI_ALLOW_SIMULATED_TIME", "SMTP_STARTTLS"}
_INTEGER = {"SVI_CALL_TIME_LIMIT", "SVI_RETURNING_CALLER_DAYS", "SVI_CALLER_RETENTION_DAYS",
            "SVI_VOICEMAIL_MAX_SECONDS", "SMTP_PORT", "SMTP_TIMEOUT", "MAX_UPLOAD_BYTES"}
_DEV_SECRET = "dev-only-secret-change-me"


class SettingsError(RuntimeError):
    """A setting is missing or malformed."""


def _coerce(name: str, raw: str) -> object:
    if name in _BOOLEAN:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if name in _INTEGER:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} doit être un nombre entier, reçu {raw!r}") from None
    return raw


def load(instance_path: str, environ: os._Environ | dict | None = None,
         overrides: dict | None = None) -> dict[str, object]:
    """Return the settings: DEFAULTS, then the environment, then `overrides` (tests)."""
    env = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for name in DEFAULTS:
        if name in env and env[name] != "":
            settings[name] = _coerce(name, env[name])
    settings.update(overrides or {})
    if settings["SVI_ENV"] not in ("development", "production"):
        # A typo ("prod") must not quietly drop the production checks.
        raise SettingsError(f"SVI_ENV doit valoir development ou production, reçu "
                            f"{settings['SVI_ENV']!r}")
    production = settings["SVI_ENV"] == "production"
    if production:
        missing = [n for n in ("DATABASE_URL", "SECRET_KEY", "TWILIO_AUTH_TOKEN",
                               "PUBLIC_BASE_URL", "SVI_CALLER_ID") if not settings[n]]
        if missing:
            raise SettingsError("réglages obligatoires en production : " + ", ".join(missing))
        if settings["SVI_ALLOW_SIMULATED_TIME"]:
            raise SettingsError("SVI_ALLOW_SIMULATED_TIME est interdit en production")
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = _DEV_SECRET
    if not settings["CALLER_HASH_KEY"]:
        settings["CALLER_HASH_KEY"] = settings["SECRET_KEY"]
    if not settings["DATABASE_URL"]:
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        settings["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'svi.sqlite3'}"
    settings["PUBLIC_BASE_URL"] = str(settings["PUBLIC_BASE_URL"]).rstrip("/")
    if not settings["JOURNAL_DIR"]:
        settings["JOURNAL_DIR"] = str(Path(instance_path) / "journal")
    # Flask refuses larger bodies (413) before reading them.
    settings["MAX_CONTENT_LENGTH"] = settings["MAX_UPLOAD_BYTES"]
    return settings

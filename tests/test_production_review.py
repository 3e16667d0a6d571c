"""Hostile review of the production features (issue 12): one test per defect it found, now fixed."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from accounts.models import Role
from core import logs
from core.cli import upgrade
from tests.test_oidc import AGENT, _account, provider, sso_app, sso_login, standin  # noqa: F401
from tests.webclient import make_user

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    return subprocess.run(["bash", str(ROOT / "deploy" / script), *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


# --- open redirect through `next` -------------------------------------------------------------

@pytest.mark.parametrize("target", ["/annuaire/\r\n", "/x\nSet-Cookie: a=b"])
def test_a_next_with_a_line_break_does_not_end_the_login_in_a_500(sso_app, db, provider, target):
    """A link « /connexion?next=/annuaire/%0D%0A » (sent by anyone, or mangled by a mail client):
    `_safe_next` keeps the target (urlsplit silently drops CR/LF before checking it, but the
    original string is returned), the agent logs in with ProConnect and, once authenticated,
    gets « Internal Server Error »: werkzeug refuses a Location header with a line break. The
    README promises the return from the provider never ends in a 500. Expected: such a `next`
    is refused (302 to `/`). Fix: web/auth.py `_safe_next` returns None when the target holds
    any control character (`any(ord(c) < 32 or c == "\\x7f" for c in target)`) or a backslash."""
    make_user(db, "camille.martin@interieur.gouv.fr", Role.admin)
    response = sso_login(sso_app.test_client(), next_url=target)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"] == "/", response.headers["Location"]


# --- account takeover by a Unicode look-alike email ---------------------------------------------

def test_a_lookalike_unicode_email_does_not_open_an_existing_account(sso_app, db, provider):
    """A provider vouches (email_verified: true) for « \\u212aamille@interieur.gouv.fr » (KELVIN
    SIGN, not the letter K: another mailbox, another person). `normalize_email` lower-cases it
    with Unicode rules into the ASCII « kamille@interieur.gouv.fr », so the SSO login is tied to
    and opens the existing admin account of that address: account takeover. Expected: the
    identity does not match that account (a new role-less account, or a refusal). Fix:
    accounts/oidc.py `resolve` compares `identity.email.strip().lower()` (NFKC-unchanged,
    i.e. refuse when `unicodedata.normalize('NFKC', e) != e` or when lower() maps non-ASCII to
    ASCII), or accounts/operations.normalize_email refuses non-ASCII local parts/domains (IDN
    domains in their xn-- form only)."""
    victim = make_user(db, "kamille@interieur.gouv.fr", Role.admin)
    provider.users[AGENT]["email"] = "\u212aamille@interieur.gouv.fr"
    provider.users[AGENT]["email_verified"] = True
    client = sso_app.test_client()
    sso_login(client)
    assert _account(db, "kamille@interieur.gouv.fr").oidc_subject is None
    with client.session_transaction() as session:
        assert session.get("_user_id") != str(victim.id)


# --- backups ---------------------------------------------------------------------------------

def test_old_backups_are_pruned_in_a_folder_with_a_space(tmp_path):
    """An operator keeps backups in « /srv/sauvegardes svi » with BACKUP_KEEP=1. backup.sh's
    retention pipes `ls` into `xargs rm -f`, which splits the paths at the space: nothing is
    deleted (rm -f hides it), the disk fills up night after night, and `rm -f` is run on
    unrelated paths (« /srv/sauvegardes » and a relative « svi/svi-….sqlite3 »). Expected: only
    the newest BACKUP_KEEP backups remain. Fix: deploy/backup.sh, prune with a NUL-safe loop,
    e.g. `mapfile -t old < <(ls -1 ... | sort -r | tail -n +$((keep+1)))` then
    `rm -f -- "${old[@]}"` (names have no newline), or `find ... -print0 | sort -z -r | tail -z
    -n +N | xargs -0 -r rm -f --`."""
    url = f"sqlite:///{tmp_path / 'svi.sqlite3'}"
    upgrade(url)
    folder = tmp_path / "sauvegardes svi"
    made = []
    for _ in range(3):
        result = _run("backup.sh", str(folder), DATABASE_URL=url, BACKUP_KEEP="1")
        assert result.returncode == 0, result.stderr
        made.append(Path(result.stdout.strip()).name)
    assert sorted(p.name for p in folder.iterdir()) == [made[-1]]


# --- logs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    "numéro de rappel refusé : +33 6 12 34 56 78",       # international, written with spaces
    "POST https://api.example/Calls?To=%2B33612345678",  # URL-encoded, as in a URL or a body
    "rappel 06-12-34-56-78",                             # dashes
])
def test_the_safety_net_masks_common_written_forms_of_a_number(message):
    """The README promises that every message and traceback is scanned for anything that looks
    like a phone number. A number written « +33 6 12 34 56 78 », URL-encoded « %2B336… » (in a
    URL or a form body quoted by an exception) or « 06-12-34-56-78 » goes to journald in clear.
    Expected: no 6+ digit tail of the number survives in the JSON line. Fix: core/logs.py
    `_NUMBER`: also `\\+\\d{1,3}(?:[ .-]?\\d){8,12}`, `0\\d(?:[ .-]\\d\\d){4}`, and allow a
    `%2B` prefix (lookbehind on `%2B`, mask the digits after it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("svi.review")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = json.loads(stream.getvalue())
    digits = "".join(c for c in line["msg"] if c.isdigit())
    assert "123456" not in digits and "12345678" not in digits, line["msg"]

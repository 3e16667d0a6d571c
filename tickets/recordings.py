"""Voicemail recordings: listened to through the service, deleted at Twilio when they expire.

A voicemail's audio stays at Twilio. The call keeps the address Twilio posted
(`Call.recording_url`, ``https://api.twilio.com/2010-04-01/Accounts/AC…/Recordings/RE…``); the
browser never sees it: `stream` fetches ``<recording>.mp3`` with the account's credentials
(TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN, HTTP basic auth) and hands the bytes on in chunks, so a
long message never sits in memory. The request always goes to TWILIO_API_BASE (default
https://api.twilio.com; a local stand-in in tests, see devtools/twilio_standin.py) with the
account and recording SIDs read from the stored address: the credentials never go anywhere else.

When the caller data retention period ends (SVI_CALLER_RETENTION_DAYS), `purge_expired` (run by
the scheduler's purge-callers job) deletes each expired recording at Twilio through the REST API
(the official `twilio` library) and only then forgets its address: a recording Twilio could not
delete keeps its address, and the next day's run tries again. A 404 from Twilio means it is
already gone.

Every failure is a `RecordingError` whose message, in French, can be shown as is.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import requests
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tracking.models import Call

log = logging.getLogger(__name__)
#: The twilio library logs every request at INFO: only its warnings are wanted.
_twilio_log = logging.getLogger(__name__ + ".twilio")
_twilio_log.setLevel(logging.WARNING)

#: Seconds to open a connection to Twilio, and to wait for each piece of its answer: a
#: referent's page or the nightly job never hangs on Twilio being down.
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
#: Bytes handed on at a time while streaming.
CHUNK = 64 * 1024
#: Recordings deleted per transaction by the purge.
PURGE_BATCH = 100
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/x-wav"}

_ACCOUNT = re.compile(r"/Accounts/(AC[0-9A-Za-z]{1,62})/", re.IGNORECASE)
_RECORDING = re.compile(r"/Recordings/(RE[0-9A-Za-z]{1,62})(?:\.(?:mp3|wav|json))?/?$", re.IGNORECASE)

UNAVAILABLE = "enregistrement indisponible"


class RecordingError(RuntimeError):
    """The recording cannot be fetched or deleted; the message (French) can be shown as is."""


class TwilioUnreachable(RecordingError):
    """Twilio did not answer in time (or at all): worth trying again later."""


class NotARecording(RecordingError):
    """The stored address names no Twilio recording: there is nothing to fetch or delete."""


@dataclass(frozen=True)
class RecordingRef:
    """A recording at Twilio: its account and its SID."""

    account_sid: str
    sid: str


def parse(url: str | None, default_account: str = "") -> RecordingRef:
    """The account and recording SIDs of a Twilio RecordingUrl (NotARecording otherwise)."""
    path = urlsplit(url or "").path
    recording = _RECORDING.search(path)
    account = _ACCOUNT.search(path)
    account_sid = account.group(1) if account else default_account
    if recording is None or not account_sid:
        raise NotARecording(f"{UNAVAILABLE} : l'adresse enregistrée ne désigne pas un "
                            "enregistrement Twilio")
    return RecordingRef(account_sid, recording.group(1))


def _settings(app: Flask) -> tuple[str, str, str]:
    """(account SID, auth token, API base URL); RecordingError when the account is not set."""
    sid, token = app.config.get("TWILIO_ACCOUNT_SID") or "", app.config.get("TWILIO_AUTH_TOKEN") or ""
    if not (sid and token):
        raise RecordingError(f"{UNAVAILABLE} : le compte Twilio n'est pas configuré "
                             "(TWILIO_ACCOUNT_SID et TWILIO_AUTH_TOKEN)")
    base = (app.config.get("TWILIO_API_BASE") or "https://api.twilio.com").rstrip("/")
    return sid, token, base


def _refused(status: int, doing: str) -> RecordingError:
    if status in (401, 403):
        return RecordingError(f"{UNAVAILABLE} : Twilio a refusé les identifiants du compte "
                              f"({doing}, HTTP {status})")
    if status == 404:
        return RecordingError(f"{UNAVAILABLE} : il n'existe plus chez Twilio")
    return RecordingError(f"{UNAVAILABLE} : Twilio a répondu HTTP {status} ({doing}) ; "
                          "réessayez dans quelques minutes")


def _unreachable(exc: Exception) -> TwilioUnreachable:
    reason = "ne répond pas à temps" if isinstance(exc, requests.Timeout) else "est injoignable"
    return TwilioUnreachable(f"{UNAVAILABLE} : Twilio {reason} ; réessayez dans quelques minutes")


# --- listening ---------------------------------------------------------------------------------

def stream(app: Flask, call: Call, *, audio_format: str = "mp3") -> tuple[Iterator[bytes], str, int | None]:
    """The call's voicemail audio from Twilio: (chunks, content type, length or None).

    Checked before anything is returned (credentials, existence): a RecordingError means
    nothing was sent yet, so the page can show its message. The chunks are read from Twilio as
    they are handed on; closing the iterator (the browser went away) closes the connection.
    """
    if audio_format not in MEDIA_TYPES:
        raise ValueError(audio_format)
    if not call.recording_url:
        raise RecordingError(f"{UNAVAILABLE} : aucun message, ou supprimé à la fin de la durée "
                             "de conservation")
    account, token, base = _settings(app)
    ref = parse(call.recording_url, account)
    url = f"{base}/2010-04-01/Accounts/{ref.account_sid}/Recordings/{ref.sid}.{audio_format}"
    try:
        response = requests.get(url, auth=(account, token), stream=True,
                                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                headers={"Accept": "audio/*", "Accept-Encoding": "identity"})
    except requests.RequestException as exc:
        log.warning("enregistrement %s de l'appel %s : Twilio injoignable (%s)", ref.sid, call.id,
                    type(exc).__name__)
        raise _unreachable(exc) from None
    content_type = response.headers.get("Content-Type", "")
    if response.status_code != 200 or not content_type.startswith("audio/"):
        response.close()
        log.warning("enregistrement %s de l'appel %s : Twilio a répondu %s (%s)", ref.sid,
                    call.id, response.status_code, content_type or "sans type")
        if response.status_code == 200:
            raise RecordingError(f"{UNAVAILABLE} : Twilio n'a pas envoyé de son ({content_type})")
        raise _refused(response.status_code, "lecture")
    length = response.headers.get("Content-Length", "")
    return (_chunks(response, ref, call.id), content_type,
            int(length) if length.isascii() and length.isdigit() else None)


#: Largest recording read whole to answer a byte range (a 120 s voicemail is about 1 MB).
MAX_WHOLE = 32 * 1024 * 1024


def read_whole(chunks: Iterator[bytes], length: int | None) -> bytes:
    """The audio of `stream`'s chunks in one piece, or RecordingError when it is cut short or
    larger than MAX_WHOLE (the connection to Twilio is closed either way)."""
    parts, size = [], 0
    try:
        if length is not None and length > MAX_WHOLE:
            raise RecordingError(f"{UNAVAILABLE} : enregistrement trop volumineux")
        for part in chunks:
            size += len(part)
            if size > MAX_WHOLE:
                raise RecordingError(f"{UNAVAILABLE} : enregistrement trop volumineux")
            parts.append(part)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if length is not None and size != length:
        raise RecordingError(f"{UNAVAILABLE} : lecture interrompue")
    return b"".join(parts)


def _chunks(response: requests.Response, ref: RecordingRef, call_id: int) -> Iterator[bytes]:
    try:
        yield from response.iter_content(CHUNK)
    except requests.RequestException as exc:
        # The answer has started: the browser sees a cut file. Nothing else to do but log it.
        log.warning("enregistrement %s de l'appel %s : lecture interrompue (%s)", ref.sid, call_id,
                    type(exc).__name__)
    finally:
        response.close()


# --- deleting ----------------------------------------------------------------------------------

def client(app: Flask) -> Client:
    """A Twilio REST client on the account, pointed at TWILIO_API_BASE, with short timeouts."""
    account, token, base = _settings(app)
    twilio = Client(account, token, http_client=TwilioHttpClient(timeout=READ_TIMEOUT,
                                                                  logger=_twilio_log))
    twilio.edge = twilio.region = None  # TWILIO_EDGE / TWILIO_REGION would rewrite the host
    twilio.api.base_url = base
    return twilio


def delete_url(twilio: Client, url: str | None) -> bool:
    """Delete a recording at Twilio: True if deleted now, False if it was already gone (404)."""
    ref = parse(url, twilio.account_sid)
    try:
        twilio.api.v2010.accounts(ref.account_sid).recordings(ref.sid).delete()
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise _refused(exc.status, "suppression") from None
    except requests.RequestException as exc:
        raise _unreachable(exc) from None
    return True


def delete(app: Flask, call: Call) -> bool:
    """Delete the call's recording at Twilio: True if deleted now, False if already gone (404).

    Leaves `call.recording_url` alone: the caller forgets it once this has returned (see
    `purge_expired`), so that a recording is never lost track of while it is still at Twilio.
    """
    if not call.recording_url:
        return False
    return delete_url(client(app), call.recording_url)


# --- retention ---------------------------------------------------------------------------------

@dataclass
class Purge:
    """What `purge_expired` did."""

    deleted: int = 0  # deleted at Twilio now
    gone: int = 0  # already gone at Twilio (404) or no Twilio recording: address forgotten
    failed: int = 0  # address kept for the next run
    stopped: str | None = None  # why the run stopped early

    def summary(self) -> str | None:
        """French summary for the job's detail; None when there was nothing to do."""
        if not (self.deleted or self.gone or self.failed or self.stopped):
            return None
        parts = [f"{self.deleted} enregistrement(s) supprimé(s) chez Twilio"]
        if self.gone:
            parts.append(f"{self.gone} déjà absent(s)")
        if self.failed:
            parts.append(f"{self.failed} en échec, conservé(s) pour le prochain passage")
        if self.stopped:
            parts.append(f"arrêt : {self.stopped}")
        return ", ".join(parts)


def _expired(before: datetime):
    return (Call.started_at < before) & Call.recording_url.is_not(None)


def forget(db: Session, done: list[tuple[int, str]]) -> None:
    """Erase the recording address of calls whose recording is no longer at Twilio (flush only).

    Each row is cleared only if it still holds the address that was deleted."""
    for call_id, url in done:
        db.execute(update(Call).where(Call.id == call_id, Call.recording_url == url)
                   .values(recording_url=None).execution_options(synchronize_session=False))
    db.flush()


def purge_expired(app: Flask, db: Session, *, before: datetime, commit: Callable[[], object],
                  batch: int | None = None) -> Purge:
    """Delete at Twilio the recordings of calls started before `before`, then forget them.

    Run by the scheduler's purge-callers job, which passes its edge's `commit`: each batch is
    read, its transaction ended before Twilio is called (no transaction stays open meanwhile),
    and the addresses of the recordings deleted (or already gone) are erased and committed. A
    recording Twilio refused to delete keeps its address for the next run; Twilio unreachable
    stops the run there. Idempotent: a second run finds nothing, or only what failed.
    """
    outcome, batch = Purge(), batch or PURGE_BATCH
    try:
        twilio = client(app)
    except RecordingError as exc:
        count = db.scalar(select(func.count()).select_from(Call).where(_expired(before)))
        if count:
            log.warning("%d enregistrement(s) échu(s) non supprimé(s) : %s", count, exc)
            outcome.failed, outcome.stopped = count, "compte Twilio non configuré"
        return outcome
    last = 0
    while outcome.stopped is None:
        rows = db.execute(select(Call.id, Call.recording_url)
                          .where(_expired(before), Call.id > last)
                          .order_by(Call.id).limit(batch)).all()
        if not rows:
            break
        commit()  # nothing written yet: the read ends before Twilio is called
        done = []
        for call_id, url in rows:
            try:
                if delete_url(twilio, url):
                    outcome.deleted += 1
                else:
                    outcome.gone += 1
            except NotARecording:
                log.warning("appel %s : adresse d'enregistrement sans enregistrement Twilio, "
                            "oubliée", call_id)
                outcome.gone += 1
            except TwilioUnreachable as exc:
                log.error("appel %s : %s ; purge des enregistrements arrêtée, reprise au prochain "
                          "passage", call_id, exc)
                outcome.failed += 1
                outcome.stopped = "Twilio injoignable"
                break
            except RecordingError as exc:
                log.error("appel %s : enregistrement non supprimé : %s", call_id, exc)
                outcome.failed += 1
                continue
            done.append((call_id, url))
        forget(db, done)
        commit()
        last = rows[-1][0]
    if outcome.deleted or outcome.gone or outcome.failed:
        log.info("enregistrements échus : %s", outcome.summary())
    return outcome

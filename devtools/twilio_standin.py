"""A local stand-in for the part of Twilio's REST API the service calls: voicemail recordings.

It listens on 127.0.0.1 (a free port chosen by the system) in a background thread and answers
what Twilio answers, in the same shapes:

- ``GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.mp3`` (``.wav`` or no
  extension): the audio, ``audio/mpeg`` (``audio/x-wav``), with its Content-Length;
- ``GET …/Recordings/{RecordingSid}.json``: the recording's metadata;
- ``DELETE …/Recordings/{RecordingSid}.json`` (or without extension): 204, then 404 for ever;
- HTTP basic auth with the account SID and the auth token, else 401 (Twilio's error 20003);
  another account's path or an unknown or deleted recording: 404 (error 20404).

Every request is kept in `requests` (method, path, authorised or not) so tests can assert
exactly what reached "Twilio". Recordings are added with `add()`; with ``serve_any`` (default)
any well-formed recording SID not deleted serves the default audio, so that recordings made by
the call simulator (random ``RE…`` SIDs) can be listened to in browser tests. ``fail`` (a status
code for every request, e.g. 500), ``failures`` (a status per recording SID) and ``delay``
(seconds before answering) stage Twilio's bad days.

    with TwilioStandin(auth_token=AUTH_TOKEN) as twilio:
        app.config.update(twilio.settings)      # TWILIO_ACCOUNT_SID, …_AUTH_TOKEN, …_API_BASE
        sid = twilio.add(audio=b"…")
        call.recording_url = twilio.recording_url(sid)   # as Twilio posts it: https://api.twilio.com/…

Never imported by the service.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import sys
import threading
import time
import wave
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
#: The call simulator's account (ivr.simulator.Emulator): its recordings are this account's.
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC\w{1,62})/Recordings/(?P<sid>RE\w{1,62})"
                  r"(?:\.(?P<ext>mp3|wav|json))?$")
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/x-wav"}


def silent_mp3(seconds: float = 1.0) -> bytes:
    """A valid MPEG-1 Layer III stream of silence (128 kbit/s, 44.1 kHz, mono)."""
    header = bytes([0xFF, 0xFB, 0x90, 0xC0])  # no CRC, 128 kbit/s, 44.1 kHz, no padding, mono
    frame = header + bytes(144 * 128000 // 44100 - len(header))  # 417 bytes; zero side info
    frames = max(1, round(seconds * 44100 / 1152))
    return frame * frames


def silent_wav(seconds: float = 1.0) -> bytes:
    """A WAV file of silence as Twilio records (8 kHz, mono, 16 bits)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(2 * int(8000 * seconds)))
    return out.getvalue()


@dataclass(frozen=True)
class Seen:
    """A request the stand-in received."""

    method: str
    path: str
    #: True when the basic auth matched the account SID and auth token.
    authorized: bool
    #: The user name sent in the basic auth (the account SID when right), or None.
    user: str | None


class TwilioStandin:
    """Twilio's recordings REST API on loopback: `url`, `settings`, `add()`, `requests`, `stop()`."""

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID,
                 auth_token: str = "standin-auth-token", *, serve_any: bool = True,
                 audio: bytes | None = None, wav: bytes | None = None):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.serve_any = serve_any
        self.default_audio = {"mp3": audio if audio is not None else silent_mp3(3),
                              "wav": wav if wav is not None else silent_wav(3)}
        #: Audio per recording SID ({"mp3": …, "wav": …}); see `add`.
        self.recordings: dict[str, dict[str, bytes]] = {}
        self.deleted: set[str] = set()
        self.requests: list[Seen] = []
        #: Status code answered to every request (e.g. 500, 503), or None.
        self.fail: int | None = None
        #: Status code answered for one recording SID, e.g. {"RE…": 500}.
        self.failures: dict[str, int] = {}
        #: Seconds to wait before answering (timeouts).
        self.delay: float = 0.0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> TwilioStandin:
        standin = self

        class Handler(_Handler):
            pass
        Handler.standin = standin
        self._server = _Server((HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="twilio-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> TwilioStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "stand-in not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, to be given as TWILIO_API_BASE."""
        return f"http://{HOST}:{self.port}"

    @property
    def settings(self) -> dict[str, str]:
        """The app settings that point the service at this stand-in."""
        return {"TWILIO_ACCOUNT_SID": self.account_sid, "TWILIO_AUTH_TOKEN": self.auth_token,
                "TWILIO_API_BASE": self.url}

    # --- recordings ------------------------------------------------------------------------

    def add(self, sid: str | None = None, *, audio: bytes | None = None,
            wav: bytes | None = None) -> str:
        """Hold a recording (the default audio unless given); returns its SID."""
        sid = sid or f"RE{secrets.token_hex(16)}"
        with self._lock:
            self.recordings[sid] = {"mp3": audio if audio is not None else self.default_audio["mp3"],
                                    "wav": wav if wav is not None else self.default_audio["wav"]}
            self.deleted.discard(sid)
        return sid

    def recording_url(self, sid: str) -> str:
        """The RecordingUrl Twilio would post for this recording (on api.twilio.com)."""
        return f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Recordings/{sid}"

    def exists(self, sid: str) -> bool:
        with self._lock:
            return sid not in self.deleted and (sid in self.recordings or self.serve_any)

    def seen(self, method: str | None = None) -> list[Seen]:
        """The requests received (of one method when given), oldest first."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def deletions(self) -> list[str]:
        """SIDs of the recordings a DELETE reached (authorised), in order."""
        return [m.group("sid") for r in self.seen("DELETE") if r.authorized
                and (m := PATH.match(r.path))]

    def _audio(self, sid: str, ext: str) -> bytes | None:
        with self._lock:
            if sid in self.deleted:
                return None
            if sid in self.recordings:
                return self.recordings[sid][ext]
            return self.default_audio[ext] if self.serve_any else None

    def _delete(self, sid: str) -> bool:
        with self._lock:
            if sid in self.deleted or not (sid in self.recordings or self.serve_any):
                return False
            self.deleted.add(sid)
            self.recordings.pop(sid, None)
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a request left hanging (a `delay`) never holds `stop()` back

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up: normal
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    standin: TwilioStandin
    server_version = "twilio-standin/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # no line per request on stderr
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_POST(self):
        self._handle("POST")

    def _credentials(self) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None, None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        return user, password

    def _handle(self, method: str) -> None:
        standin = self.standin
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        user, password = self._credentials()
        authorized = (user, password) == (standin.account_sid, standin.auth_token)
        with standin._lock:
            standin.requests.append(Seen(method, path, authorized, user))
        if standin.delay:
            time.sleep(standin.delay)
        if standin.fail:
            return self._error(standin.fail, 20500, "Internal Server Error")
        if not authorized:
            return self._error(401, 20003, "Authenticate",
                               {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        match = PATH.match(path)
        if match is None or match.group("account") != standin.account_sid:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        sid, ext = match.group("sid"), match.group("ext")
        if sid in standin.failures:
            return self._error(standin.failures[sid], 20500, "Internal Server Error")
        if method == "DELETE" and ext in (None, "json"):
            if not standin._delete(sid):
                return self._error(404, 20404, f"The requested resource {path} was not found")
            return self._send(204, b"", None)
        if method in ("GET", "HEAD"):
            ext = ext or "wav"  # Twilio serves WAV when no extension is asked
            audio = standin._audio(sid, "mp3")
            if audio is None:
                return self._error(404, 20404, f"The requested resource {path} was not found")
            if ext == "json":
                body = json.dumps({"sid": sid, "account_sid": standin.account_sid,
                                   "status": "completed", "channels": 1, "source": "RecordVerb",
                                   "uri": path}).encode()
                return self._send(200, body, "application/json", head=method == "HEAD")
            return self._send(200, standin._audio(sid, ext), MEDIA_TYPES[ext], head=method == "HEAD")
        return self._error(405, 20004, "Method not allowed")

    def _send(self, status: int, body: bytes, content_type: str | None, *, head: bool = False,
              headers: dict | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and not head:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                pass

    def _error(self, status: int, code: int, message: str, headers: dict | None = None) -> None:
        body = json.dumps({"code": code, "message": message, "status": status,
                           "more_info": f"https://www.twilio.com/docs/errors/{code}"}).encode()
        self._send(status, body, "application/json", headers=headers)

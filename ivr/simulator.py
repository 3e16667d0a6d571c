"""A Twilio stand-in: drives the real webhooks, signed, following TwiML as Twilio does.

Used by `flask --app app call` (in-process or against a running server) and by the tests.
"""

from __future__ import annotations

import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import click
from defusedxml import ElementTree
from flask import Flask, current_app
from twilio.request_validator import RequestValidator

from core.cli import instant_option


def new_sid(prefix: str = "CA") -> str:
    """A fake but well-formed Twilio SID, unique across runs (the database outlives a process)."""
    return f"{prefix}{secrets.token_hex(16)}"


@dataclass
class Referent:
    """What the referent side does when a <Dial> rings.

    behaviour: "accept" (picks up, presses 1, talks), "decline" (picks up, no key: a personal
    voicemail), "no-answer", "busy", "caller-hangup" (the caller hangs up while it rings).
    """

    behaviour: str = "accept"
    talk_seconds: int = 60
    ring_seconds: int = 8


@dataclass
class Transcript:
    """What happened on a simulated call."""

    call_sid: str
    lines: list[str] = field(default_factory=list)
    #: Seconds the call has lasted so far (as Twilio would count them).
    elapsed: int = 0
    #: The parameters Twilio sends with every request of this call (CallSid, From, To…).
    base: dict = field(default_factory=dict)
    heard: list[str] = field(default_factory=list)
    dialled: list[list[str]] = field(default_factory=list)
    requests: list[tuple[str, dict, int]] = field(default_factory=list)
    twiml: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Printable transcript."""
        return "\n".join(self.lines)


@dataclass
class Pause:
    """A call waiting for the caller's keys: what to post them to, what runs without them.

    Plain data, so that a paused call can be kept between two requests of the simulator page.
    """

    base: dict
    action: str
    rest: str
    finish_on_key: str = "#"
    elapsed: int = 0


class FlaskTransport:
    """Deliver requests to an in-process app through its test client."""

    def __init__(self, app: Flask):
        self.client = app.test_client()

    def post(self, url: str, params: dict, headers: dict) -> tuple[int, str]:
        resp = self.client.post(url, data=params, headers=headers)
        return resp.status_code, resp.get_data(as_text=True)


class HttpTransport:
    """Deliver requests over HTTP to a running server (`local_base` replaces the public base)."""

    def __init__(self, local_base: str, public_base: str):
        self.local_base, self.public_base = local_base.rstrip("/"), public_base.rstrip("/")

    def post(self, url: str, params: dict, headers: dict) -> tuple[int, str]:
        target = self.local_base + url[len(self.public_base):] if url.startswith(self.public_base) else url
        req = urllib.request.Request(target, data=urllib.parse.urlencode(params).encode(),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


class Emulator:
    """Plays Twilio's part for one call: signs requests and interprets TwiML verbs."""

    def __init__(self, transport, *, auth_token: str, public_base: str, account_sid: str = "AC" + "0" * 32):
        self.transport, self.auth_token = transport, auth_token
        self.public_base, self.account_sid = public_base.rstrip("/"), account_sid

    def signature(self, url: str, params: dict) -> str:
        """X-Twilio-Signature as Twilio computes it."""
        return RequestValidator(self.auth_token or "unset").compute_signature(url, params)

    def post(self, t: Transcript, url: str, params: dict, *, signed: bool = True) -> tuple[int, str]:
        """POST a webhook, signed like Twilio does."""
        headers = {"X-Twilio-Signature": self.signature(url, params)} if signed else {}
        status, body = self.transport.post(url, params, headers)
        t.requests.append((url, dict(params), status))
        return status, body

    def call(self, *, caller: str, called: str = "+33806000156", keys: list[str | None] = (),
             referents: list[Referent] = (), voicemail_seconds: int = 0, at: str | None = None,
             call_sid: str | None = None, hang_up_after: int | None = None,
             send_status: bool = True, test: bool = False) -> Transcript:
        """Place one call; `keys` answers each <Gather> in turn (None: no input)."""
        t, base, url = self._start(caller, called, at, call_sid, test)
        params = dict(base, CallStatus="ringing")
        self._follow(t, base, url, params, list(keys), list(referents), voicemail_seconds,
                     hang_up_after=hang_up_after)
        if send_status:
            self.end(t, base, at)
        return t

    def begin(self, *, caller: str, called: str = "+33806000156", at: str | None = None,
              test: bool = False) -> tuple[Transcript, "Pause | None"]:
        """Place a call that stops at its first question (the browser simulator)."""
        t, base, url = self._start(caller, called, at, None, test)
        pause = self._follow(t, base, url, dict(base, CallStatus="ringing"), [], [], 0,
                             stop_at_question=True)
        return t, pause

    def answer(self, pause: "Pause", digits: str | None, *, referent: Referent,
               voicemail_seconds: int = 0) -> tuple[Transcript, "Pause | None"]:
        """Answer the question a paused call is waiting on, then go on to the next one."""
        t = Transcript(call_sid=pause.base["CallSid"], lines=[], elapsed=pause.elapsed)
        url, params = pause.action, dict(pause.base, CallStatus="in-progress")
        finish = pause.finish_on_key
        if digits and finish and finish in digits:  # Twilio stops there, key not sent
            digits = digits.split(finish)[0] or None
        if digits:
            t.lines.append(f"⌨ l'appelant tape {digits}")
            params["Digits"] = digits
            body = None
        else:  # no input: Twilio runs the verbs after <Gather>
            t.lines.append("⌛ aucune saisie")
            body = pause.rest
        next_pause = self._follow(t, pause.base, url, params, [], [referent] * 10,
                                  voicemail_seconds, stop_at_question=True, body=body)
        return t, next_pause

    def end(self, t: Transcript, base: dict, at: str | None = None) -> None:
        """The final status callback, as Twilio sends it when the call is over."""
        status_url = f"{self.public_base}/ivr/status" + (
            f"?{urllib.parse.urlencode({'at': at})}" if at else "")
        self.post(t, status_url, dict(base, CallStatus="completed",
                                      CallDuration=str(max(t.elapsed, 1)), SequenceNumber="0"))

    def _start(self, caller, called, at, call_sid, test) -> tuple[Transcript, dict, str]:
        sid = call_sid or new_sid()
        base = {"CallSid": sid, "AccountSid": self.account_sid, "From": caller, "To": called,
                "Caller": caller, "Called": called, "Direction": "inbound", "ApiVersion": "2010-04-01"}
        query = {k: v for k, v in (("at", at), ("test", "1" if test else None)) if v}
        url = f"{self.public_base}/ivr/voice" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return Transcript(call_sid=sid, base=base), base, url

    def _follow(self, t, base, url, params, keys, referents, voicemail_seconds, *,
                hang_up_after=None, stop_at_question=False, body=None) -> "Pause | None":
        """Post webhooks and run their TwiML until the call ends (or, when asked, until a
        question waits for keys that were not given); `body`: TwiML to run before posting."""
        requests_left = 60
        while (url or body) and requests_left:
            if body is None:
                requests_left -= 1
                if hang_up_after is not None and len(t.twiml) >= hang_up_after:
                    t.lines.append("📴 l'appelant raccroche")
                    return None
                status, body = self.post(t, url, params)
                if status != 200:
                    t.lines.append(f"⚠ HTTP {status} sur {url}")
                    return None
                t.twiml.append(body)
            outcome = self._run_twiml(t, body, base, keys, referents, voicemail_seconds,
                                      t.elapsed, stop_at_question)
            body = None
            if isinstance(outcome, Pause):
                t.elapsed = outcome.elapsed
                return outcome
            url, params, t.elapsed = outcome
        return None

    # -- TwiML interpretation -----------------------------------------------------------------
    def _run_twiml(self, t, body, base, keys, referents, voicemail_seconds, elapsed,
                   stop_at_question=False):
        root = ElementTree.fromstring(body)
        if root.tag != "Response":
            raise AssertionError(f"not TwiML: {body[:200]}")
        verbs = list(root)
        for index, verb in enumerate(verbs):
            if verb.tag in ("Say", "Play"):
                self._hear(t, verb)
                elapsed += 3
            elif verb.tag == "Gather":
                for child in verb:
                    self._hear(t, child)
                if stop_at_question and not keys:
                    rest = "".join(ElementTree.tostring(v, encoding="unicode")
                                   for v in verbs[index + 1:])
                    return Pause(base=base, action=verb.get("action"), rest=f"<Response>{rest}</Response>",
                                 finish_on_key=verb.get("finishOnKey", "#"), elapsed=elapsed)
                digits = keys.pop(0) if keys else None
                finish = verb.get("finishOnKey", "#")
                if digits and finish and finish in digits:  # Twilio stops there, key not sent
                    digits = digits.split(finish)[0] or None
                if digits:
                    t.lines.append(f"⌨ l'appelant tape {digits}")
                    return verb.get("action"), dict(base, CallStatus="in-progress", Digits=digits), elapsed + 5
                t.lines.append("⌛ aucune saisie")
                elapsed += int(verb.get("timeout", "5"))
                continue  # falls through to the next verb, as Twilio does
            elif verb.tag == "Redirect":
                return verb.text.strip(), dict(base, CallStatus="in-progress"), elapsed
            elif verb.tag == "Dial":
                return self._dial(t, verb, base, referents, elapsed)
            elif verb.tag == "Record":
                t.lines.append(f"⏺ enregistrement ({voicemail_seconds} s)")
                if not voicemail_seconds:  # empty: no action request, the next verb runs
                    elapsed += int(verb.get("timeout", "5"))
                    continue
                params = dict(base, CallStatus="in-progress", RecordingDuration=str(voicemail_seconds))
                params["RecordingUrl"] = f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Recordings/{new_sid('RE')}"
                params["RecordingSid"] = params["RecordingUrl"].rsplit("/", 1)[1]
                return verb.get("action"), params, elapsed + voicemail_seconds
            elif verb.tag == "Hangup":
                t.lines.append("📴 fin de l'appel")
                return None, None, elapsed
        return None, None, elapsed  # end of document: Twilio hangs up

    def _hear(self, t, verb):
        text = (verb.text or "").strip()
        t.heard.append(text)
        t.lines.append(("🔊 " if verb.tag == "Say" else "🎵 ") + text)

    def _dial(self, t, dial, base, referents, elapsed):
        numbers = [n for n in dial if n.tag == "Number"]
        t.dialled.append([n.text.strip() for n in numbers])
        t.lines.append("☎ appel de " + ", ".join(n.text.strip() for n in numbers))
        ref = referents.pop(0) if referents else Referent("no-answer")
        action = dial.get("action")
        parent = dict(base, CallStatus="in-progress")
        if ref.behaviour == "caller-hangup":
            t.lines.append("📴 l'appelant raccroche pendant la sonnerie")
            return None, None, elapsed + ref.ring_seconds
        # The first number is the one that reacts; the others ring out.
        number = numbers[0]
        leg_sid = new_sid()
        leg = {"CallSid": leg_sid, "ParentCallSid": base["CallSid"], "AccountSid": self.account_sid,
               "From": base["Called"], "To": number.text.strip(), "Direction": "outbound-dial"}
        status_url = number.get("statusCallback")
        self._leg_status(t, status_url, leg, "initiated", 0)
        self._leg_status(t, status_url, leg, "ringing", 1)
        if ref.behaviour in ("no-answer", "busy"):
            self._leg_status(t, status_url, leg, ref.behaviour, 2)
            t.lines.append(f"   → {'occupé' if ref.behaviour == 'busy' else 'pas de réponse'}")
            return action, dict(parent, DialCallStatus=ref.behaviour, DialCallSid=leg_sid), \
                elapsed + (0 if ref.behaviour == "busy" else int(dial.get("timeout", "20")))
        self._leg_status(t, status_url, leg, "answered", 2)
        # Whisper requests carry the leg's own CallSid; the parent's is in the URL we gave.
        on_leg = {k: v for k, v in leg.items() if k != "ParentCallSid"}
        status, whisper = self.post(t, number.get("url"), dict(on_leg, CallStatus="in-progress"))
        accepted = False
        for verb in ElementTree.fromstring(whisper):
            if verb.tag == "Gather":
                t.lines.append("   (côté référent) " + " ".join((c.text or "").strip() for c in verb))
                digits = "1" if ref.behaviour == "accept" else ""
                if digits:
                    status, after = self.post(t, verb.get("action"),
                                              dict(on_leg, CallStatus="in-progress", Digits=digits))
                    accepted = not any(v.tag == "Hangup" for v in ElementTree.fromstring(after))
                break
        talk = ref.talk_seconds if accepted else 3
        t.lines.append("   → le référent prend l'appel" if accepted else "   → messagerie du référent, appel non pris")
        self._leg_status(t, status_url, leg, "completed", 3, duration=talk)
        return action, dict(parent, DialCallStatus="completed", DialCallSid=leg_sid,
                            DialCallDuration=str(talk)), elapsed + ref.ring_seconds + talk

    def _leg_status(self, t, url, leg, status, seq, duration=None):
        if not url:
            return
        params = dict(leg, CallStatus=status, SequenceNumber=str(seq))
        if duration is not None:
            params["CallDuration"] = str(duration)
        self.post(t, url, params)


def _keys(ctx, param, value: str) -> list[str | None]:
    """`--keys 93,,1`: one entry per question, an empty one is silence; digits, * and #."""
    entries = [k.strip() or None for k in value.split(",")] if value else []
    wrong = [k for k in entries if k and not re.fullmatch(r"[0-9*#]+", k)]
    if wrong:
        raise click.BadParameter(f"touches invalides : {', '.join(wrong)} (un clavier de "
                                 "téléphone n'a que 0-9, * et #)")
    return entries


def init_app(app: Flask) -> None:
    """Register `flask --app app call`."""

    @app.cli.command("call")
    @click.option("--from", "caller", default="+33612345678", show_default=True,
                  help="Numéro de l'appelant (ou « anonymous »).")
    @click.option("--keys", default="", callback=_keys,
                  help="Touches tapées, une saisie par virgule (vide : silence) : 93,1,2")
    @click.option("--at", "at", default=None, callback=instant_option,
                  help="Instant simulé, ex. 2026-12-26T10:00 (heure de Paris).")
    @click.option("--referent", default="accept", show_default=True,
                  type=click.Choice(["accept", "decline", "no-answer", "busy", "caller-hangup"]),
                  help="Comportement du référent appelé.")
    @click.option("--voicemail", default=0, help="Durée du message vocal laissé, en secondes.")
    @click.option("--url", default=None, help="Serveur en marche, ex. http://127.0.0.1:5000 "
                                              "(par défaut : l'application en mémoire).")
    def call_command(caller, keys, at, referent, voicemail, url):
        """Simule un appel : parcourt les vrais webhooks, signés, et affiche la transcription."""
        from sqlalchemy import select

        from core import db
        from tracking.models import Call

        cfg = current_app.config
        public = cfg["PUBLIC_BASE_URL"] or (url or "http://localhost").rstrip("/")
        if url:
            if not re.match(r"https?://[^/]", url):
                raise click.BadParameter("adresse attendue, ex. http://127.0.0.1:5000",
                                         param_hint="--url")
            transport = HttpTransport(url, public)
        else:
            transport = FlaskTransport(current_app)
            if at:
                current_app.config["CLOCK"] = lambda: at
        emulator = Emulator(transport, auth_token=cfg["TWILIO_AUTH_TOKEN"], public_base=public)
        if at and url:
            click.echo("(--at n'est pris en compte que si le serveur a "
                       "SVI_ALLOW_SIMULATED_TIME=1)")
        try:
            t = emulator.call(caller=caller, keys=keys, referents=[Referent(referent)] * 10,
                              voicemail_seconds=voicemail, at=at.isoformat() if at and url else None)
        except urllib.error.URLError as exc:
            raise click.ClickException(f"serveur injoignable à {url} : {exc.reason}") from None
        click.echo(t.text())
        db.session().expire_all()
        record = db.session().scalars(select(Call).where(Call.call_sid == t.call_sid)).one_or_none()
        if record is None:
            click.echo("issue enregistrée : (appel introuvable dans la base)")
            return
        click.echo(f"issue enregistrée : {record.outcome.value if record.outcome else 'aucune'}"
                   f" — département {record.departement_code or '-'}"
                   f", thématique {record.thematique or '-'}")

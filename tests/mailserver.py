"""A real SMTP server on loopback for the tests (aiosmtpd): what it received, and the mailboxes
it refuses or the password it accepts, as a test asks."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

#: The one password `Inbox.authenticate` accepts.
PASSWORD = "bon-mot-de-passe"


def free_port() -> int:
    """A loopback port nobody listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping what it receives; refuses (550) the addresses in `refuse`."""

    def __init__(self):
        self.envelopes = []
        self.logins: list[tuple[str, str]] = []
        self.refuse: set[str] = set()
        self.port = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == PASSWORD.encode(), handled=False)

    def messages(self):
        # SMTP carries CRLF line ends; the message as written has LF.
        return [email.message_from_bytes(e.content.replace(b"\r\n", b"\n"),
                                         policy=email.policy.default) for e in self.envelopes]

    def by_subject(self, fragment: str):
        found = [m for m in self.messages() if fragment in m["Subject"]]
        assert len(found) == 1, [m["Subject"] for m in self.messages()]
        return found[0]


@contextmanager
def running(*, authentication: bool = False) -> Iterator[Inbox]:
    """An SMTP server on a free loopback port for the `with` block (`inbox.port`)."""
    inbox = Inbox()
    options = dict(authenticator=inbox.authenticate, auth_require_tls=False) \
        if authentication else {}
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()

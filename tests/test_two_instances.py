"""Two instances of the service (two gunicorn servers, separate processes) on one PostgreSQL:
an admin changes a département's line through one, and the very next call routed by the
other dials the new number (each process caches the directory by its version,
directory/cache.py). One call whose webhooks alternate between the two is followed in their
logs by its CallSid."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie

from ivr.simulator import Emulator, HttpTransport, Referent
from tests.conftest import AUTH_TOKEN, PUBLIC_BASE
from tests.servers import OPEN, app_env, flask, gunicorn, log_lines
from tests.webclient import PASSWORD, _TOKEN, form_fields

ADMIN = "admin@example.gouv.fr"
TO_93 = ["93", "1", "1"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Pages of one instance over HTTP, with its session cookie (kept by hand: the cookie is
    `Secure`, the test server plain HTTP)."""

    def __init__(self, port: int):
        self.base, self.cookies = f"http://127.0.0.1:{port}", {}
        self.opener = urllib.request.build_opener(_NoRedirect)

    def request(self, path: str, data: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())})
        try:
            resp = self.opener.open(req, timeout=30)
        except urllib.error.HTTPError as exc:
            resp = exc
        for header in resp.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return resp.status if hasattr(resp, "status") else resp.code, resp.read().decode()

    def form(self, path: str) -> dict:
        status, page = self.request(path)
        assert status == 200, page
        return form_fields(page)


class Alternating:
    """Twilio's requests for one call spread over two instances, in turn."""

    def __init__(self, *servers):
        self.transports = [HttpTransport(f"http://127.0.0.1:{s.port}", PUBLIC_BASE) for s in servers]
        self.sent = 0

    def post(self, url, params, headers):
        self.sent += 1
        return self.transports[self.sent % len(self.transports)].post(url, params, headers)


def test_a_directory_change_on_one_instance_routes_the_next_call_on_the_other(pg_cluster, tmp_path):
    env = app_env(pg_cluster.create_database("svi_two"), tmp_path)
    flask({**env, "ADMIN_EMAIL": ADMIN, "ADMIN_PASSWORD": PASSWORD}, "setup")  # the first admin
    with gunicorn(env, tmp_path / "a.log", workers=1, name="a") as a, \
            gunicorn(env, tmp_path / "b.log", workers=1, name="b") as b:
        on_b = Emulator(HttpTransport(f"http://127.0.0.1:{b.port}", PUBLIC_BASE),
                        auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
        first = on_b.call(caller="+33612345678", keys=TO_93, at=OPEN,
                          referents=[Referent("accept")])
        assert first.dialled[0] == ["+33199009301"]  # B now holds 93's lines in its cache

        admin = Browser(a.port)
        token = _TOKEN.search(admin.request("/connexion")[1])
        status, _ = admin.request("/connexion", {"email": ADMIN, "password": PASSWORD,
                                                 "csrf_token": token.group(1) or token.group(2)})
        assert status == 302
        fields = admin.form("/annuaire/93/modifier")
        assert fields["lines-0-number"] == "+33 1 99 00 93 01"
        fields["lines-0-number"] = "01 99 00 93 77"
        status, page = admin.request("/annuaire/93/modifier", fields)
        assert status == 302, page

        nxt = on_b.call(caller="+33698765432", keys=TO_93, at=OPEN, referents=[Referent("accept")])
        assert nxt.dialled[0] == ["+33199009377"]  # the very next call on B

        spread = Emulator(Alternating(a, b), auth_token=AUTH_TOKEN, public_base=PUBLIC_BASE)
        t = spread.call(caller="+33611112222", keys=["75", "1", "2"], at=OPEN,
                        referents=[Referent("accept", talk_seconds=30)])
        assert t.dialled == [["+33199007501", "+33199007502"]]
    # An operator follows the call across both instances by its CallSid; every line is JSON.
    logs = {name: log_lines(server) for name, server in (("a", a), ("b", b))}
    mine = {name: [line for line in lines if line.get("call_sid") == t.call_sid
                   and line.get("event") == "request"] for name, lines in logs.items()}
    assert mine["a"] and mine["b"] and len(mine["a"]) + len(mine["b"]) == len(t.requests)
    assert {line["instance"] for line in mine["a"]}.isdisjoint(
        {line["instance"] for line in mine["b"]})
    everything = a.log.read_text() + b.log.read_text()
    for digits in ("612345678", "698765432", "611112222"):
        assert digits not in everything
    assert a.logged_errors() == 0 and b.logged_errors() == 0, a.log_tail() + b.log_tail()

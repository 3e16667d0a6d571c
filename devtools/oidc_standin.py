"""A stand-in OpenID Connect provider on 127.0.0.1, for the tests and for trying single sign-on
without the internet. It behaves like ProConnect where it matters: discovery under /api/v2,
state and nonce of 32 characters at least, the client's secret in the token request's body (or
HTTP Basic), a userinfo answer that is a signed JWT (or JSON), RP-initiated logout. It checks
what a provider checks (code once and fresh, client secret, redirect URI, PKCE verifier) and can
misbehave on demand so that the tests see the service refuse.

    standin = OidcStandIn().start()
    standin.add_user("agent-1", "camille.martin@interieur.gouv.fr", "Camille", "Martin")
    standin.auto_user = "agent-1"          # approve at once (else a small page to choose)
    standin.misbehave = {"nonce"}          # or "audience", "expired", "signature", "issuer",
                                           # "userinfo_sub", "userinfo_signature"
    ... OIDC_ISSUER=standin.issuer, OIDC_CLIENT_ID=standin.client_id, OIDC_CLIENT_SECRET=...
    standin.stop()

By hand: `python -m devtools.oidc_standin [PORT]` serves two test agents and prints the settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from html import escape
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

HOST = "127.0.0.1"
PATH = "/api/v2"  # ProConnect's discovery base: https://<domain>/api/v2
CODE_SECONDS = 30  # ProConnect's authorization codes live 30 seconds
MIN_RANDOM = 32  # ProConnect refuses a shorter state or nonce


class OidcStandIn:
    """The provider, served in a thread: `issuer`, `client_id`, `client_secret`, `users`."""

    def __init__(self, client_id: str = "svi-standin", client_secret: str | None = None,
                 port: int = 0):
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.key = _rsa_key("standin-1")
        self.users: dict[str, dict] = {}  # sub -> claims
        self.auto_user: str | None = None  # approved without asking
        self.deny = False  # the person refuses: error=access_denied
        self.misbehave: set[str] = set()
        self.userinfo_jwt = True  # ProConnect answers userinfo with a signed JWT
        self.pkce = True  # advertise S256 in the discovery document
        self.logouts: list[dict] = []  # end_session requests received
        self.token_requests: list[dict] = []  # what the client sent to the token endpoint
        self._codes: dict[str, dict] = {}
        self._access: dict[str, str] = {}  # access token -> sub
        self._lock = threading.Lock()
        self._server = make_server(HOST, port, self._app(), threaded=True)
        self.url = f"http://{HOST}:{self._server.server_port}"
        self.issuer = self.url + PATH
        self._thread: threading.Thread | None = None

    # --- running ---------------------------------------------------------------------------

    def start(self) -> "OidcStandIn":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="oidc-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def add_user(self, sub: str, email: str, given_name: str = "", usual_name: str = "",
                 **claims) -> None:
        """A person the provider knows (ProConnect's claims, plus any extra)."""
        self.users[sub] = {"sub": sub, "email": email, "given_name": given_name,
                           "usual_name": usual_name, "uid": sub, "siret": "13002526500013",
                           **claims}

    def settings(self) -> dict:
        """The service's settings that point at this stand-in."""
        return {"OIDC_ISSUER": self.issuer, "OIDC_CLIENT_ID": self.client_id,
                "OIDC_CLIENT_SECRET": self.client_secret, "OIDC_PROVIDER_NAME": "ProConnect"}

    # --- tokens ----------------------------------------------------------------------------

    def _sign(self, claims: dict, *, forged: bool = False) -> str:
        key = _rsa_key(self.key.kid) if forged else self.key  # same kid, another key
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}, claims, key)

    def _id_token(self, grant: dict) -> str:
        now = int(time.time())
        bad = self.misbehave
        claims = {"iss": self.url + "/ailleurs" if "issuer" in bad else self.issuer,
                  "sub": grant["sub"],
                  "aud": "un-autre-service" if "audience" in bad else self.client_id,
                  "iat": now - 7200 if "expired" in bad else now,
                  "exp": now - 3600 if "expired" in bad else now + 60,
                  "auth_time": now, "acr": "eidas1", "idp_id": "standin",
                  "nonce": "n" * MIN_RANDOM if "nonce" in bad else grant["nonce"]}
        return self._sign(claims, forged="signature" in bad)

    # --- the HTTP endpoints ----------------------------------------------------------------

    def _app(self) -> Flask:
        app = Flask("oidc_standin")
        base = PATH

        @app.get(base + "/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "userinfo_endpoint": self.issuer + "/userinfo",
                "jwks_uri": self.issuer + "/jwks",
                "end_session_endpoint": self.issuer + "/session/end",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "scopes_supported": ["openid", "email", "given_name", "usual_name", "uid",
                                     "siret"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "userinfo_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "client_secret_basic"],
                **({"code_challenge_methods_supported": ["S256"]} if self.pkce else {}),
            })

        @app.get(base + "/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.route(base + "/authorize", methods=["GET", "POST"])
        def authorize():
            params = request.values
            problem = self._check_authorize(params)
            if problem:
                return Response(f"Requête refusée : {problem}", 400, mimetype="text/plain")
            redirect_uri, state = params["redirect_uri"], params["state"]
            sub = params.get("sub") if request.method == "POST" else self.auto_user
            if self.deny or (request.method == "POST" and "refuser" in params):
                return redirect(_with(redirect_uri, error="access_denied", state=state,
                                      error_description="La personne a refusé."))
            if sub is None:
                return self._choose_page(params)
            if sub not in self.users:
                abort(400)
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {"sub": sub, "nonce": params["nonce"],
                                     "redirect_uri": redirect_uri, "at": time.time(),
                                     "challenge": params.get("code_challenge"),
                                     "method": params.get("code_challenge_method")}
            return redirect(_with(redirect_uri, code=code, state=state))

        @app.post(base + "/token")
        def token():
            form = request.form
            self.token_requests.append(dict(form))
            client_id, secret = form.get("client_id"), form.get("client_secret")
            if request.authorization and request.authorization.type == "basic":
                client_id = request.authorization.username
                secret = request.authorization.password
            if client_id != self.client_id or not hmac.compare_digest(
                    secret or "", self.client_secret):
                return _error("invalid_client", 401)
            if form.get("grant_type") != "authorization_code":
                return _error("unsupported_grant_type")
            with self._lock:
                grant = self._codes.pop(form.get("code", ""), None)  # a code serves once
            if grant is None or time.time() - grant["at"] > CODE_SECONDS:
                return _error("invalid_grant")
            if form.get("redirect_uri") != grant["redirect_uri"]:
                return _error("invalid_grant")
            if grant["challenge"] and not _pkce_ok(form.get("code_verifier"), grant):
                return _error("invalid_grant")
            access = secrets.token_urlsafe(24)
            self._access[access] = grant["sub"]
            return jsonify({"access_token": access, "token_type": "Bearer", "expires_in": 60,
                            "id_token": self._id_token(grant), "scope": "openid"})

        @app.get(base + "/userinfo")
        def userinfo():
            scheme, _, access = request.headers.get("Authorization", "").partition(" ")
            sub = self._access.get(access) if scheme.lower() == "bearer" else None
            if sub is None:
                return _error("invalid_token", 401)
            claims = dict(self.users[sub])
            if "userinfo_sub" in self.misbehave:
                claims["sub"] = "quelqu-un-d-autre"
            if not self.userinfo_jwt:
                return jsonify(claims)
            claims.update(iss=self.issuer, aud=self.client_id, iat=int(time.time()))
            return Response(self._sign(claims, forged="userinfo_signature" in self.misbehave),
                            mimetype="application/jwt")

        @app.get(base + "/session/end")
        def end_session():
            self.logouts.append(dict(request.args))
            target = request.args.get("post_logout_redirect_uri")
            if not target:
                return Response("Vous êtes déconnecté du fournisseur de test.",
                                mimetype="text/plain")
            return redirect(_with(target, state=request.args.get("state", "")))

        return app

    def _check_authorize(self, params) -> str | None:
        if params.get("client_id") != self.client_id:
            return "client_id inconnu"
        if params.get("response_type") != "code":
            return "response_type doit valoir code"
        if "openid" not in (params.get("scope") or "").split():
            return "le scope openid manque"
        if not params.get("redirect_uri"):
            return "redirect_uri manque"
        for name in ("state", "nonce"):
            if len(params.get(name) or "") < MIN_RANDOM:
                return f"{name} trop court (32 caractères au moins)"
        if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
            return "code_challenge_method doit valoir S256"
        return None

    def _choose_page(self, params) -> Response:
        """A tiny page to choose who logs in (or to refuse)."""
        hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                         for k, v in params.items() if k != "sub")
        buttons = "".join(
            f'<li><button type="submit" name="sub" value="{escape(sub)}">Se connecter en tant '
            f'que {escape(u["given_name"])} {escape(u["usual_name"])} ({escape(u["email"])})'
            f'</button></li>' for sub, u in self.users.items())
        return Response(
            '<!doctype html><html lang="fr"><head><meta charset="utf-8"><link rel="icon" '
            'href="data:,"><title>Fournisseur d\'identité de test</title></head><body><main>'
            "<h1>Fournisseur d'identité de test</h1>"
            f'<form method="post"><ul>{buttons}</ul>{hidden}'
            '<button type="submit" name="refuser" value="1">Refuser</button></form>'
            "</main></body></html>", mimetype="text/html")


def _rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def _with(url: str, **params) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _error(code: str, status: int = 400) -> tuple:
    return jsonify({"error": code}), status


def _pkce_ok(verifier: str | None, grant: dict) -> bool:
    if not verifier or grant["method"] != "S256":
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(expected, grant["challenge"])


def main(argv: list[str]) -> int:
    """Serve two test agents until interrupted, and print the settings to give the service."""
    logging.basicConfig(level=logging.INFO)
    standin = OidcStandIn(port=int(argv[1]) if len(argv) > 1 else 0)
    standin.add_user("agent-1", "camille.martin@interieur.gouv.fr", "Camille", "Martin")
    standin.add_user("agent-2", "dominique.petit@interieur.gouv.fr", "Dominique", "Petit")
    standin.start()
    for name, value in standin.settings().items():
        print(f"{name}={value}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Reverse-proxy headers: X-Forwarded-* honoured only from the addresses in TRUSTED_PROXIES.

Behind nginx (or a load balancer) the TCP peer of the app is the proxy: the client's address,
the scheme (https) and the public host come in X-Forwarded-For/-Proto/-Host/-Port. Anyone can
send those headers, so werkzeug's ProxyFix is applied only when the peer is a configured proxy;
from any other peer they are dropped before the app sees them. Each request is marked
`svi.forwarded` when it carried such a header (relayed by a proxy, or pretending to be): the
/metrics address check (core/observability.py) refuses relayed requests.

Twilio's signatures do not depend on this when PUBLIC_BASE_URL is set (ivr/security.py rebuilds
the public URL from it); without it, the URL the app sees must be the public one, which is what
ProxyFix restores from a trusted proxy's headers.
"""

from __future__ import annotations

import ipaddress
import time

from werkzeug.middleware.proxy_fix import ProxyFix

#: The WSGI keys of the headers a proxy sets (and a client may forge).
FORWARDED_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED")
#: Peer addresses whose verdict is remembered, at most (then the memo starts afresh).
_MEMO_SIZE = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """'10.0.0.5, 192.168.0.0/24, ::1' -> networks; ValueError on a malformed entry.

    Strict like gunicorn's `forwarded_allow_ips`: '10.0.0.1/24' (host bits set) is refused."""
    networks = []
    for item in str(raw or "").split(","):
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=True))
    return tuple(networks)


class AddressSet:
    """Membership of peer addresses in a list of networks, memoized (a few hundred ns a hit)."""

    def __init__(self, networks: tuple[Network, ...]):
        self.networks = networks
        self._memo: dict[str, bool] = {}

    def __contains__(self, address: str | None) -> bool:
        if not self.networks or not address:
            return False
        verdict = self._memo.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:  # a Unix socket peer, or anything else: not an address
                verdict = False
            else:
                if ip.version == 6 and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                verdict = any(ip in net for net in self.networks)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[address] = verdict
        return verdict


class TrustedProxies:
    """WSGI middleware: ProxyFix (one proxy hop) for trusted peers, forwarded headers dropped
    for every other peer. Also stamps the request's start (`svi.t0`) for the access log."""

    def __init__(self, app, networks: tuple[Network, ...]):
        self.app = app
        self.trusted = AddressSet(networks)
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=0)

    def __call__(self, environ, start_response):
        environ["svi.t0"] = time.perf_counter()
        forwarded = False
        for key in FORWARDED_KEYS:
            if key in environ:
                forwarded = True
                break
        if forwarded:
            environ["svi.forwarded"] = True
            if environ.get("REMOTE_ADDR") in self.trusted:
                return self.fixed(environ, start_response)
            for key in FORWARDED_KEYS:
                environ.pop(key, None)
        return self.app(environ, start_response)


def init_app(app) -> None:
    """Wrap the app's WSGI callable (TRUSTED_PROXIES read once, at start)."""
    app.wsgi_app = TrustedProxies(app.wsgi_app, parse_networks(app.config["TRUSTED_PROXIES"]))

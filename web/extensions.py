"""The Flask extensions of the web interface, created once and bound by `web.init_app`."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf import CSRFProtect


def _address() -> str:
    return request.remote_addr or "inconnue"


csrf = CSRFProtect()
login_manager = LoginManager()
#: Login attempts per address and per account (see web/auth.py); storage from RATELIMIT_STORAGE_URI.
limiter = Limiter(key_func=_address)

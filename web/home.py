"""`/`: the login page for visitors, each role's home for users."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask_login import current_user

from accounts.models import Role
from web import policy

bp = Blueprint("home", __name__)


@bp.get("/")
@policy.allow(policy.public)
def index():
    """Send each visitor where their work is."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.role is Role.referent and len(current_user.departement_codes) == 1:
        (code,) = current_user.departement_codes
        return redirect(url_for("directory_pages.show", code=code))
    return redirect(url_for("directory_pages.overview"))

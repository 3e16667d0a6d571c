"""Who may do what: pure predicates on a user and a département, used by every page and the API.

A user here is anything with `role`, `active` and `departement_codes` (the model, or a test
double); None is an anonymous visitor.
"""

from __future__ import annotations

from accounts.models import Role


def is_active(user) -> bool:
    """A logged-in, enabled account that holds a role (one created by single sign-on has none
    until an admin grants it: it reaches nothing)."""
    return (user is not None and bool(getattr(user, "active", False))
            and getattr(user, "role", None) is not None)


def awaits_role(user) -> bool:
    """A logged-in, enabled account without a role yet (single sign-on, before an admin acts)."""
    return (user is not None and bool(getattr(user, "active", False))
            and getattr(user, "role", None) is None)


def has_role(user, *roles: Role) -> bool:
    """The user is active and holds one of `roles`."""
    return is_active(user) and user.role in roles


def may_administer(user) -> bool:
    """Edit the directory, the prompts, the accounts; read the audit log."""
    return has_role(user, Role.admin)


def sees_every_departement(user) -> bool:
    """Admins and the national team read every département."""
    return has_role(user, Role.admin, Role.national)


def may_read_departement(user, code: str) -> bool:
    """Read a département's directory entry, calendar and call preview."""
    if sees_every_departement(user):
        return True
    return has_role(user, Role.referent) and code in user.departement_codes


def may_edit_departement(user, code: str) -> bool:
    """Change a département's directory entry: admins only."""
    return may_administer(user)


def visible_codes(user, all_codes) -> list[str]:
    """The codes among `all_codes` this user may read, in the given order."""
    return [code for code in all_codes if may_read_departement(user, code)]

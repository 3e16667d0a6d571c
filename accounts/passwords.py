"""Password hashing (Argon2id, memory-hard) and the rules a new password must follow."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256  # hashing a megabyte "password" costs the server, not the attacker

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
#: Verified when the account is unknown, so that timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("compte inexistant : temps constant")


def problem(password: str) -> str | None:
    """Why a new password is refused (French), or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"le mot de passe doit compter au moins {MIN_LENGTH} caractères"
    if len(password) > MAX_LENGTH:
        return f"le mot de passe doit compter au plus {MAX_LENGTH} caractères"
    if password.strip() != password or not password.strip():
        return "le mot de passe ne doit ni commencer ni finir par une espace"
    return None


def hash_password(password: str) -> str:
    """The Argon2id hash stored for a password."""
    return _hasher.hash(password)


def verify(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches `stored_hash`; always spends the same time."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)

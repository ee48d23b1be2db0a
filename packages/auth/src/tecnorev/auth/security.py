"""Password hashing and tokens: argon2 hashes, signed access JWTs, opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from tecnorev.auth.config import AuthConfig, AuthSettings, get_auth_config
from tecnorev.core.errors import NotAuthenticated, Overloaded
from tecnorev.core.types import utcnow

_ISSUER = "tecnorev"


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(),))


# argon2 at these parameters takes ~64 MiB and ~0.4 s of a core per hash.  Unbounded, 48
# clients posting logins took a worker from 107 MiB to 2 GiB and every other route from 9 ms
# to seconds; a few at a time cap the memory at slots x 64 MiB and leave cores for the rest.


@lru_cache(maxsize=1)
def _hash_slots() -> tuple[threading.BoundedSemaphore, float]:
    settings = AuthSettings()
    return threading.BoundedSemaphore(settings.hash_slots), settings.password_hash_wait


# lru_cache does not stop two first callers from each building a semaphore (then twice the
# slots would run): the first logins of a worker arrive together.
_SLOTS_MADE = threading.Lock()


@contextmanager
def _hash_slot() -> Iterator[None]:
    with _SLOTS_MADE:
        slots, wait = _hash_slots()
    if not slots.acquire(timeout=wait):
        raise Overloaded("too many logins at once; retry shortly", retry_after=wait)
    try:
        yield
    finally:
        slots.release()


def hash_password(password: str) -> str:
    with _hash_slot():
        return _hasher().hash(password)


def verify_password(password: str, hashed: str) -> tuple[bool, str | None]:
    """Whether ``password`` matches, and a fresh hash when the stored one uses old parameters."""
    with _hash_slot():
        return _hasher().verify_and_update(password, hashed)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_verification(password: str) -> None:
    """Spend what a real verification costs, so an unknown email answers no faster."""
    dummy = _dummy_hash()
    with _hash_slot():
        _hasher().verify(password, dummy)


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    family_id: str
    expires_at: datetime


def create_access_token(
    user_id: int, family_id: str, config: AuthConfig | None = None
) -> tuple[str, datetime]:
    config = config or get_auth_config()
    now = utcnow()
    expires = now + config.access_ttl
    claims = {
        "sub": str(user_id),
        "fam": family_id,
        "iat": now,
        "exp": expires,
        "iss": _ISSUER,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, config.secret_key, algorithm=config.algorithm), expires


def decode_access_token(token: str, config: AuthConfig | None = None) -> AccessClaims:
    config = config or get_auth_config()
    claims = _verified(token, config.secret_key, config.algorithm)
    # checked at every use: the token was verified while it was valid
    if claims.expires_at.timestamp() <= time.time():
        raise NotAuthenticated("the access token has expired; refresh it")
    return claims


@lru_cache(maxsize=4096)
def _verified(token: str, secret_key: str, algorithm: str) -> AccessClaims:
    """A token's claims once its signature and claims are checked, kept per token and key: a
    client sends the same token for minutes, and the check costs more than a page's SQL
    (about 50 µs).  A token refused is not kept; whether its login is live is read anew at
    every request (``deps.load_principal``)."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[algorithm],
            issuer=_ISSUER,
            options={"require": ["sub", "fam", "exp", "iat"]},
        )
        user_id = int(claims["sub"])
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("the access token has expired; refresh it") from exc
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise NotAuthenticated("the access token is not valid") from exc
    return AccessClaims(user_id, str(claims["fam"]), datetime.fromtimestamp(claims["exp"], UTC))


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the hash stored in its place (the token itself is never stored)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_family_id() -> str:
    return secrets.token_hex(16)

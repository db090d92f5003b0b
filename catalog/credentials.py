"""Client ids and client secrets.

Secrets are 256 random bits. A slow password hash (bcrypt, scrypt) exists to stretch guessable passwords; against a
256-bit random secret SHA-256 is already beyond brute force, and it keeps /auth/token cheap under load. Only the hash
is stored; the secret is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from catalog.model import is_org_id, is_slug

SECRET_PREFIX = "cks_"  # noqa: S105 - a prefix that makes leaked secrets greppable, not a secret
MAX_GRACE_HOURS = 168


@dataclass(frozen=True)
class Principal:
    """Who a client id names: an org (app_id None) or one app of an org."""

    org_id: str
    app_id: str | None = None

    @property
    def client_id(self) -> str:
        if self.app_id is None:
            return f"org-{self.org_id}"
        return f"org-{self.org_id}-app-{self.app_id}"

    @classmethod
    def parse(cls, client_id: str) -> Principal | None:
        """The inverse of client_id; None for anything malformed (a UUID never contains '-app-')."""
        if not client_id.startswith("org-"):
            return None
        org_id, sep, app_id = client_id[4:].partition("-app-")
        if not is_org_id(org_id):
            return None
        if not sep:
            return cls(org_id)
        return cls(org_id, app_id) if is_slug(app_id) else None


class StoredSecret(BaseModel):
    model_config = ConfigDict(frozen=True)

    sha256: str
    # Epoch seconds after which this secret stops working; None for the current secret.
    not_after: int | None = None


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored: list[StoredSecret], now_s: int) -> bool:
    candidate = hash_secret(secret)
    matched = False
    for entry in stored:
        live = entry.not_after is None or now_s < entry.not_after
        # Compare against every entry so the time taken does not reveal which one matched.
        if hmac.compare_digest(candidate, entry.sha256) and live:
            matched = True
    return matched


def rotated(stored: list[StoredSecret], new_hash: str, grace_hours: int, now_s: int) -> list[StoredSecret]:
    """The secrets after a rotation: the new one current, every older one alive at most for the grace period.

    The grace period caps all older secrets, not only the one that was current: a rotation with grace 0 after a leak
    must cut off a secret still in an earlier rotation's grace too. Grace is never extended by rotating again.
    """
    if not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise ValueError(f"grace period must be 0-{MAX_GRACE_HOURS} hours")
    deadline = now_s + grace_hours * 3600
    kept: list[StoredSecret] = []
    for entry in stored:
        not_after = deadline if entry.not_after is None else min(entry.not_after, deadline)
        if not_after > now_s:
            kept.append(StoredSecret(sha256=entry.sha256, not_after=not_after))
    return [StoredSecret(sha256=new_hash), *kept]

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
    # Counts up with each rotation. Tokens carry the generation of the secret that minted them, so a session lives
    # only as long as that secret does (items written before generations existed read as 0).
    generation: int = 0

    def live(self, now_s: int) -> bool:
        return self.not_after is None or now_s < self.not_after


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matching_generation(secret: str, stored: list[StoredSecret], now_s: int) -> int | None:
    """The generation of the live stored secret this one is; None if it is none of them."""
    candidate = hash_secret(secret)
    matched: int | None = None
    for entry in stored:
        # Compare against every entry so the time taken does not reveal which one matched.
        if hmac.compare_digest(candidate, entry.sha256) and entry.live(now_s):
            matched = entry.generation
    return matched


def secret_matches(secret: str, stored: list[StoredSecret], now_s: int) -> bool:
    return matching_generation(secret, stored, now_s) is not None


def rotated(stored: list[StoredSecret], new_hash: str, grace_hours: int, now_s: int) -> list[StoredSecret]:
    """The secrets after a rotation: the new one current, every older one alive at most for the grace period.

    The grace period caps all older secrets, not only the one that was current: a rotation with grace 0 after a leak
    must cut off a secret still in an earlier rotation's grace too. Grace is never extended by rotating again. The
    sessions a secret minted end with it (catalog/sessions.py), so grace 0 also ends every older secret's sessions.
    """
    if not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise ValueError(f"grace period must be 0-{MAX_GRACE_HOURS} hours")
    deadline = now_s + grace_hours * 3600
    kept: list[StoredSecret] = []
    for entry in stored:
        not_after = deadline if entry.not_after is None else min(entry.not_after, deadline)
        if not_after > now_s:
            kept.append(entry.model_copy(update={"not_after": not_after}))
    generation = max((entry.generation for entry in stored), default=0) + 1
    return [StoredSecret(sha256=new_hash, generation=generation), *kept]

"""Which of a client's sessions may still act: the state every token of the client is checked against.

A session begins at /auth/token and is carried on by refreshes; its tokens name the secret generation that began it
and the client's session epoch at the time. It ends when that secret stops working (a rotation with grace 0 at once,
otherwise when the grace period runs out) or when an admin ends every session of the client (the epoch moves on).
Both live on the client's config item, beside the secrets, so one strongly consistent read answers for any token.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.credentials import StoredSecret


@dataclass(frozen=True)
class SessionGrant:
    """What /auth/token records in the tokens it mints: the secret generation that vouched, the client's epoch."""

    generation: int
    epoch: int


@dataclass(frozen=True)
class SessionState:
    secrets: tuple[StoredSecret, ...]
    # Raised by each admin "end every session" call; tokens minted under a lower epoch are refused.
    epoch: int

    def admits(self, grant: SessionGrant, now_s: int) -> bool:
        if grant.epoch != self.epoch:
            return False
        return any(s.generation == grant.generation and s.live(now_s) for s in self.secrets)

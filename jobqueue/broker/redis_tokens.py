"""Reservation tokens: what names one reservation of a job in its in-flight record.

Every conditional step on a worker's in-flight job (``finish.lua``, ``retry.lua``,
``requeue.lua``, ``start.lua``) checks first that ``worker:<id>`` still holds the job it
means, so that a step sent again after a dropped connection, or raced by a reaper, acts once.
Matching by the job's payload bytes cannot tell two plain Resque jobs with equal class and
arguments apart, so ``reserve.lua`` writes a token into each record it makes::

    {"queue":"q","run_at":"...","worker":"host:pid","jq":"<token>","payload":{...}}

The token is made here, unique per reserve call (a random nonce of this broker and a
counter); a prefetched job gets ``<token>.<n>``. The payload stays last (its bytes are the
record's tail), and Ruby Resque and node-resque read only the keys they know. The steps match
``"jq":"<token>"`` instead of the payload; a record without a token (written by an older
jobqueue, or not reserved by this broker) is matched by its payload, as before.
"""

from __future__ import annotations

import json
import secrets
from itertools import count

TOKEN_KEY = "jq"


def token_marker(token: str) -> str:
    """The exact bytes a record with this token contains (its ``"jq"`` field)."""
    return f'"{TOKEN_KEY}":"{token}"'


def token_of(record: str) -> str | None:
    """The token of an in-flight or prefetch record (``None``: none, or not a record)."""
    try:
        body = json.loads(record)
    except ValueError:
        return None
    token = body.get(TOKEN_KEY) if isinstance(body, dict) else None
    return token if isinstance(token, str) and token else None


class Tokens:
    """The tokens this broker made, and the one of each worker's job in flight."""

    def __init__(self) -> None:
        # Hex only: a token never needs escaping in JSON, and a marker cannot match a longer
        # token ("jq":"ab" is not in "jq":"ab.1": the closing quote differs).
        self._nonce = secrets.token_hex(6)
        self._count = count(1)
        self._held: dict[str, tuple[str, str]] = {}

    def new(self) -> str:
        """A token no other reserve call makes (a fixed-length nonce, then a counter)."""
        return f"{self._nonce}{next(self._count):x}"

    def hold(self, worker_id: str, token: str | None, raw: str) -> None:
        """``worker_id``'s in-flight record now has ``token`` (``None``: no token) and holds
        the payload ``raw``."""
        if token:
            self._held[worker_id] = (token, raw)
        else:
            self._held.pop(worker_id, None)

    def forget(self, worker_id: str) -> None:
        self._held.pop(worker_id, None)

    def marker(self, worker_id: str, raw: str, fallback: str) -> str:
        """What a step on ``worker_id``'s job ``raw`` looks for in its in-flight record: the
        token's field when the token of that very job is known, else ``fallback`` (the
        payload, or ``""``: no check)."""
        held = self._held.get(worker_id)
        if held is not None and held[1] == raw:
            return token_marker(held[0])
        return fallback


__all__ = ["TOKEN_KEY", "Tokens", "token_marker", "token_of"]

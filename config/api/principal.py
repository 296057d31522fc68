"""Who is calling, as every API layer sees it: a ``Principal`` (an account, a client, its scopes).

The value only: resolving credentials to a principal (and caching it) is the accounts app's job
(``accounts.authentication``); ``config`` depends on no app.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


def normalize_scope(scope: str) -> str:
    """Seed 000's prefixed scopes and seed 001's unprefixed ones name the same right."""
    parts = scope.split(":")
    return ":".join(parts[-2:]) if len(parts) >= 2 else scope


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    client_key: str
    scopes: frozenset[str]
    application_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    expires_at: float = 0.0
    normalized_scopes: frozenset[str] = field(default=frozenset(), compare=False)

    def has_any_scope(self, required: tuple[str, ...] | list[str]) -> bool:
        if not required:
            return True
        wanted = {normalize_scope(scope) for scope in required}
        return bool(wanted & self.normalized_scopes)


def make_principal(**kwargs: Any) -> Principal:
    scopes = frozenset(kwargs.pop("scopes"))
    return Principal(scopes=scopes, normalized_scopes=frozenset(normalize_scope(s) for s in scopes), **kwargs)

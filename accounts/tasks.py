"""Celery tasks of the accounts app: thin, idempotent, each calls one service."""

from __future__ import annotations

from celery import shared_task

from accounts.services import access_tokens_purge_expired


@shared_task(name="accounts.purge_expired_access_tokens", ignore_result=True)
def purge_expired_access_tokens() -> int:
    """Daily (beat, "accounts: purge expired access tokens"): delete the OAuth access tokens whose
    lifetime has passed (they authenticate nothing any more). Returns the number deleted."""
    return access_tokens_purge_expired()

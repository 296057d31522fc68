"""Reads: resolve credentials to a Principal (``accounts.authentication`` caches them and records
their use)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.models import ApiKey, ApplicationAccess
from config.api.principal import Principal, make_principal


def principal_for_token_checksum(token_checksum: str) -> Principal | None:
    token = (
        AccessToken.objects.select_related("application__application_access")
        .filter(token_checksum=token_checksum, expires__gt=timezone.now())
        .first()
    )
    if token is None:
        return None
    access = getattr(token.application, "application_access", None)
    if access is None or not access.is_active:
        return None
    return make_principal(
        account_id=access.account_id,
        application_id=access.pk,
        client_key=f"client:{token.application.client_id}",
        scopes=token.scope.split(),
        expires_at=token.expires.timestamp(),
    )


def principal_for_api_key_checksum(key_checksum: str) -> Principal | None:
    key = ApiKey.objects.filter(key_checksum=key_checksum, is_active=True).first()
    if key is None:
        return None
    return make_principal(
        account_id=key.account_id, api_key_id=key.pk, client_key=f"apikey:{key.pk}", scopes=list(key.scopes)
    )


def account_for_user(user):
    link = getattr(user, "account_link", None)
    return link.account if link else None


def credential_name(*, account_id: uuid.UUID, kind: str, identifier: str) -> str | None:
    """The name of the account's Application Access (``kind`` "client", by OAuth client id) or API key
    (``kind`` "apiKey", by id) that ``identifier`` names; ``None`` when there is none (deleted, or
    another account's)."""
    if kind == "client":
        access = ApplicationAccess.objects.filter(account_id=account_id, application__client_id=identifier)
        return access.values_list("name", flat=True).first()
    if kind == "apiKey":
        try:
            key_id = uuid.UUID(str(identifier))
        except ValueError:
            return None
        return ApiKey.objects.filter(account_id=account_id, pk=key_id).values_list("name", flat=True).first()
    return None

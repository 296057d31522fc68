"""Every write to accounts, application accesses, tokens and API keys."""

from __future__ import annotations

import functools
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, set_token_value
from oauth2_provider.settings import oauth2_settings

from accounts.credentials import checksum, principal_cache
from accounts.exceptions import InvalidClient, InvalidScope
from accounts.models import Account, AccountUser, ApiKey, ApplicationAccess
from accounts.scopes import ALL_SCOPES, known_scope
from config.api.errors import ValidationFailed
from config.api.principal import normalize_scope


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"

    def as_dict(self) -> dict:
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scope": self.scope,
            "token_type": self.token_type,
        }


def account_get_or_create(*, name: str) -> Account:
    account, _ = Account.objects.get_or_create(name=name)
    return account


def _validate_scopes(scopes: list[str]) -> list[str]:
    if scopes == ["all"]:
        return list(ALL_SCOPES)
    unknown = [scope for scope in scopes if not known_scope(scope)]
    if unknown:
        raise ValidationFailed.for_field("scopes", f"Unknown scopes: {', '.join(unknown)}.")
    return sorted(set(scopes))


@transaction.atomic
def application_access_create(
    *, account: Account, name: str, scopes: list[str]
) -> tuple[ApplicationAccess, str]:
    """Create an OAuth client for the account. Returns the client secret: the only time it exists in clear."""
    scopes = _validate_scopes(scopes)
    if ApplicationAccess.objects.filter(account=account, name=name).exists():
        raise ValidationFailed.for_field(
            "name",
            "An Application Access with this name exists in the account.",
            code="APPLICATION_ACCESS_EXISTS",
        )
    secret = secrets.token_urlsafe(48)
    application = Application.objects.create(
        name=f"{account.name}: {name}",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
        skip_authorization=True,
    )
    access = ApplicationAccess.objects.create(
        account=account, name=name, application=application, scopes=scopes
    )
    return access, secret


@transaction.atomic
def application_access_rotate_secret(*, access: ApplicationAccess) -> str:
    secret = secrets.token_urlsafe(48)
    access.application.client_secret = secret
    access.application.save(update_fields=["client_secret"])
    return secret


@transaction.atomic
def application_access_update(
    *, access: ApplicationAccess, scopes: list[str] | None = None, is_active: bool | None = None
) -> ApplicationAccess:
    if scopes is not None:
        access.scopes = _validate_scopes(scopes)
    if is_active is not None:
        access.is_active = is_active
    access.save()
    if is_active is False or scopes is not None:
        AccessToken.objects.filter(application=access.application).delete()
        principal_cache.clear()
    return access


def application_access_revoke(*, access: ApplicationAccess) -> ApplicationAccess:
    """Deactivate the client and delete its tokens; cached lookups expire within AUTH_CACHE_SECONDS."""
    return application_access_update(access=access, is_active=False)


@functools.cache
def _dummy_client_secret_hash() -> str:
    """A hash made like every client secret's, checked when the client is unknown (equal cost)."""
    return make_password(secrets.token_urlsafe(48), hasher=oauth2_settings.CLIENT_SECRET_HASHER)


def application_access_authenticate(*, client_id: str, client_secret: str) -> ApplicationAccess:
    """The active Application Access whose client id and secret these are, or ``InvalidClient``.

    An unknown or inactive client costs what a known one with a wrong secret does: the secret is
    checked against a dummy hash made by the same hasher, so timing tells nothing about client ids.
    """
    access = (
        ApplicationAccess.objects.select_related("application")
        .filter(application__client_id=client_id, is_active=True)
        .first()
    )
    encoded = access.application.client_secret if access is not None else _dummy_client_secret_hash()
    if not check_password(client_secret, encoded) or access is None:
        raise InvalidClient()
    return access


def access_token_issue(*, client_id: str, client_secret: str, scope: str | None = None) -> IssuedToken:
    """The client-credentials grant: authenticate the client, then grant."""
    access = application_access_authenticate(client_id=client_id, client_secret=client_secret)
    return access_token_grant(access=access, scope=scope)


@transaction.atomic
def access_token_grant(*, access: ApplicationAccess, scope: str | None = None) -> IssuedToken:
    """A token for an authenticated client. Grants only scopes the Application Access holds."""
    held = list(access.scopes)
    if scope:
        requested = scope.split()
        held_normalized = {normalize_scope(s): s for s in held}
        missing = [s for s in requested if normalize_scope(s) not in held_normalized]
        if missing:
            raise InvalidScope(f"Not held by this Application Access: {', '.join(missing)}.")
        granted = requested
    else:
        granted = held
    raw = secrets.token_urlsafe(40)
    expires_in = int(oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    token = AccessToken(
        application=access.application,
        expires=timezone.now() + timedelta(seconds=expires_in),
        scope=" ".join(granted),
    )
    set_token_value(token, raw)  # RFC 9700 storage: only the checksum is kept.
    token.save()
    ApplicationAccess.objects.filter(pk=access.pk).update(last_used_at=timezone.now())
    return IssuedToken(access_token=raw, expires_in=expires_in, scope=" ".join(granted))


def access_tokens_purge_expired() -> int:
    deleted, _ = AccessToken.objects.filter(expires__lt=timezone.now()).delete()
    return deleted


@transaction.atomic
def api_key_create(*, account: Account, name: str, scopes: list[str] | None = None) -> tuple[ApiKey, str]:
    raw = "mk_" + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        account=account,
        name=name,
        prefix=raw[:10],
        key_checksum=checksum(raw),
        scopes=_validate_scopes(scopes or ["all"]),
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    key.is_active = False
    key.save(update_fields=["is_active"])
    principal_cache.clear()
    return key


@transaction.atomic
def credential_mark_used(
    *, application_id: uuid.UUID | None = None, api_key_id: uuid.UUID | None = None
) -> None:
    """Record last use. ``accounts.authentication`` calls it when a lookup misses the in-process
    cache, so at most once per credential, process and TTL."""
    now = timezone.now()
    if application_id:
        ApplicationAccess.objects.filter(pk=application_id).update(last_used_at=now)
    if api_key_id:
        ApiKey.objects.filter(pk=api_key_id).update(last_used_at=now)


@transaction.atomic
def account_user_link(*, user, account: Account) -> AccountUser:
    link, _ = AccountUser.objects.update_or_create(user=user, defaults={"account": account})
    return link

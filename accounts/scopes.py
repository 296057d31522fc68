"""Every scope the API knows: seed 000's prefixed names (seed 001's unprefixed ones are aliases)."""

from __future__ import annotations

from oauth2_provider.scopes import BaseScopes

USAGE_METERING = [
    "usage-metering:create:meter_types",
    "usage-metering:read:meter_types",
    "usage-metering:update:meter_types",
    "usage-metering:delete:meter_types",
    "usage-metering:create:meters",
    "usage-metering:read:meters",
    "usage-metering:update:meters",
    "usage-metering:delete:meters",
]
ONLINE_COLLECTION = [
    "online-collection:create:collectors",
    "online-collection:read:collectors",
    "online-collection:update:collectors",
    "online-collection:delete:collectors",
    "online-collection:ingest:collectors",
]
STREAM_MANAGEMENT = ["stream-management:read:streams", "stream-management:write:streams"]
AGGREGATION = ["aggregation:read:sessions"]
GLOBAL_PARAMETERS = [
    "global-parameters:create:parameters",
    "global-parameters:read:parameters",
    "global-parameters:update:parameters",
    "global-parameters:delete:parameters",
]
# Scopes of this service's own surfaces (compatible APIs, notifications, data correction).
SERVICE = [
    "usage-metering:ingest:usage",
    "usage-metering:read:usage",
    "usage-metering:write:data_corrections",
    "usage-metering:read:data_corrections",
    "usage-metering:write:notifications",
    "usage-metering:read:notifications",
    "meter-report",
]
ALL_SCOPES: list[str] = (
    USAGE_METERING + ONLINE_COLLECTION + STREAM_MANAGEMENT + AGGREGATION + GLOBAL_PARAMETERS + SERVICE
)
SCOPE_CHOICES = {scope: scope for scope in ALL_SCOPES}


def known_scope(scope: str) -> bool:
    from config.api.principal import normalize_scope

    return scope in SCOPE_CHOICES or any(normalize_scope(known) == scope for known in ALL_SCOPES)


class ApplicationAccessScopes(BaseScopes):
    """django-oauth-toolkit scopes backend: a client gets only what its Application Access holds."""

    def get_all_scopes(self):
        return SCOPE_CHOICES

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        access = getattr(application, "application_access", None) if application else None
        return list(access.scopes) if access else []

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return self.get_available_scopes(application, request)

"""DRF throttle that applies ``config.api.ratelimit`` to the view's endpoint group."""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle

from config.api.principal import Principal
from config.api.ratelimit import enforce_rate_limit


def throttle_group_for(view, request) -> str | None:
    getter = getattr(view, "get_throttle_group", None)
    if getter is not None:
        return getter(request)
    group = getattr(view, "throttle_group", None)
    if isinstance(group, dict):
        action = getattr(view, "action", None)
        return group.get(action) or group.get(request.method.upper()) or group.get("*")
    return group


class TokenBucketThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        group = throttle_group_for(view, request)
        if group is None:
            return True
        principal = request.auth
        client = principal.client_key if isinstance(principal, Principal) else f"ip:{self.get_ident(request)}"
        enforce_rate_limit(group, client)
        return True

"""Scope permission: an endpoint lists the scopes it accepts; the token needs at least one."""

from __future__ import annotations

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import BasePermission

from config.api.errors import InsufficientScope, Unauthorized
from config.api.principal import Principal, normalize_scope


def required_scopes_for(view, request) -> tuple[str, ...]:
    """``view.required_scopes`` maps a viewset action (or HTTP method) to the accepted scopes."""
    method = request.method.upper()
    if method == "OPTIONS":
        return ()  # the resource's methods (config.api.metadata): a valid token, no scope
    getter = getattr(view, "get_required_scopes", None)
    if getter is not None:
        return tuple(getter(request))
    mapping = getattr(view, "required_scopes", None) or {}
    action = getattr(view, "action", None)
    action_map = getattr(view, "action_map", None)
    if (action_map is not None and action is None) or (
        action_map is None and not hasattr(view, method.lower())
    ):
        # Not a method this route answers: 405 (with Allow), not 403 for a scope nobody could hold.
        raise MethodNotAllowed(request.method)
    scopes = mapping.get(action) if action else None
    if scopes is None:
        scopes = mapping.get(method, mapping.get("*"))
    if scopes is None:
        raise InsufficientScope("This endpoint declares no scope; access is refused.")
    return tuple(scopes)


def accepted_scopes(required: tuple[str, ...] | list[str]) -> list[str]:
    """Every scope a token may hold to pass ``require_scopes(required)``: each declared scope and its
    unprefixed seed 001 name (``Principal.has_any_scope`` compares the two alike), in that order."""
    accepted: dict[str, None] = {}
    for scope in required:
        accepted[scope] = None
        accepted[normalize_scope(scope)] = None
    return list(accepted)


def require_scopes(principal: Principal, scopes: tuple[str, ...] | list[str]) -> None:
    if not principal.has_any_scope(scopes):
        raise InsufficientScope(
            f"Requires at least one of the following scopes: {', '.join(scopes)}.",
            details=[{"field": "scope", "message": scope} for scope in scopes],
        )


class HasRequiredScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            raise Unauthorized()
        require_scopes(principal, required_scopes_for(view, request))
        return True

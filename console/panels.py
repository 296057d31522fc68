"""The dashboard's panels: a registry of (context function, template) pairs.

A panel is a function that takes a ``PanelRequest`` (the request, the account shown, "now") and
returns its template's context. Registering one adds it to the dashboard of every user holding
its permissions:

    @register_panel(key="data_corrections", title="Data-correction backlog",
                    template="console/panels/data_corrections.html",
                    permissions=("metering.view_datacorrection",), order=62)
    def data_corrections_panel(panel: PanelRequest) -> dict:
        return {"backlog": selectors.correction_backlog(panel.account.pk)}

Panels for data that does not exist yet are simply not registered: the dashboard never shows a
placeholder. Panels render in ``order`` (then ``key``); ``wide`` panels span the whole width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from accounts.models import Account


@dataclass(frozen=True)
class PanelRequest:
    """What a panel is built for: one request, one account, one instant."""

    request: HttpRequest
    account: Account
    now: datetime


PanelBuilder = Callable[[PanelRequest], dict[str, Any]]


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    template: str
    build: PanelBuilder
    permissions: tuple[str, ...] = ()
    order: int = 100
    wide: bool = False


@dataclass(frozen=True)
class RenderedPanel:
    key: str
    title: str
    wide: bool
    html: SafeString


_registry: dict[str, Panel] = {}


def register_panel(
    *,
    key: str,
    title: str,
    template: str,
    permissions: tuple[str, ...] = (),
    order: int = 100,
    wide: bool = False,
) -> Callable[[PanelBuilder], PanelBuilder]:
    """Decorator: add the function as a panel. A key can be registered once."""

    def decorator(build: PanelBuilder) -> PanelBuilder:
        if key in _registry:
            raise ImproperlyConfigured(f"A dashboard panel with the key {key!r} is registered already.")
        _registry[key] = Panel(
            key=key,
            title=title,
            template=template,
            build=build,
            permissions=tuple(permissions),
            order=order,
            wide=wide,
        )
        return build

    return decorator


def unregister_panel(key: str) -> None:
    _registry.pop(key, None)


def registered_panels() -> list[Panel]:
    return sorted(_registry.values(), key=lambda panel: (panel.order, panel.key))


def panels_for_user(user) -> list[Panel]:
    """The registered panels whose permissions the user holds (superusers hold every one)."""
    return [panel for panel in registered_panels() if user.has_perms(panel.permissions)]


def render_panels(*, request: HttpRequest, account: Account, now: datetime) -> list[RenderedPanel]:
    panel_request = PanelRequest(request=request, account=account, now=now)
    rendered = []
    for panel in panels_for_user(request.user):
        context = {"panel": panel, "account": account, "now": now, **panel.build(panel_request)}
        rendered.append(
            RenderedPanel(
                key=panel.key,
                title=panel.title,
                wide=panel.wide,
                html=render_to_string(panel.template, context, request=request),
            )
        )
    return rendered

"""Liveness and readiness."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {exc.__class__.__name__}"
    try:
        from config.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unavailable: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}
        if ready
        else {
            "code": "SERVICE_UNAVAILABLE",
            "message": "Not ready.",
            "details": [{"field": name, "message": value} for name, value in checks.items() if value != "ok"],
        },
        status=200 if ready else 503,
    )
    if not ready:
        response["Retry-After"] = "5"
    return response

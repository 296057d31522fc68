"""One whole-database secrets sweep (issue 12, item 7).

Every kind of secret is created through the API (client secret, access token, API key, webhook
secret, sensitive parameter value) with logging captured at DEBUG; then EVERY table of the
database is read with raw SQL and neither the rows nor the logs hold any of them in plaintext.
The API and the admin answer them masked (never the value) after creation.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from accounts import services as account_services
from notifications.models import NotificationEndpoint
from parameters.models import Parameter

pytestmark = pytest.mark.django_db

SENSITIVE = "s3nsitive-value-that-must-never-be-stored-in-clear"


def whole_database() -> str:
    """Every row of every table (the database's own list, not a fixed one) as text."""
    tables = connection.introspection.table_names(include_views=False)
    out = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            out.extend(repr(row) for row in cursor.fetchall())
    assert len(tables) > 30  # the dump is of the whole schema
    return "\n".join(out)


def test_no_secret_is_in_any_table_or_the_debug_logs_and_api_and_admin_mask_them(
    client, account, caplog, capsys, settings
):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = False
    caplog.set_level(logging.DEBUG)
    call_command("create_application_access", "--account", account.name, "--name", "sweep", "--json")
    created = json.loads(capsys.readouterr().out)
    issued = client.post(
        "/oauth/token",
        json.dumps(
            {
                "client_id": created["clientId"],
                "client_secret": created["clientSecret"],
                "grant_type": "client_credentials",
            }
        ),
        content_type="application/json",
    )
    assert issued.status_code == 200
    token = issued.json()["access_token"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    _, api_key = account_services.api_key_create(account=account, name="sweep-key")

    endpoint = api.post(
        "/notification-endpoints",
        {"url": "https://93.184.215.14/hook", "eventTypes": ["threshold.crossed"]},
        format="json",
    )
    assert endpoint.status_code == 201, endpoint.content
    webhook_secret = endpoint.json()["secret"]
    parameter = api.post(
        "/parameters", {"name": "db/password", "type": "sensitive", "value": SENSITIVE}, format="json"
    )
    assert parameter.status_code == 201, parameter.content
    assert (
        api.patch("/parameters/db/password", {"value": SENSITIVE + "-v2"}, format="json").status_code == 200
    )
    secrets = {
        "client secret": created["clientSecret"],
        "access token": token,
        "api key": api_key,
        "webhook secret": webhook_secret,
        "sensitive parameter": SENSITIVE,
        "sensitive parameter v2": SENSITIVE + "-v2",
    }

    # The API never answers them again.
    reads = [
        api.get(f"/notification-endpoints/{endpoint.json()['id']}"),
        api.get("/notification-endpoints"),
        api.get("/parameters/db/password"),
        api.get("/parameters"),
    ]
    assert [read.status_code for read in reads] == [200, 200, 200, 200]
    # The admin masks them too.
    admin = get_user_model().objects.create_superuser(username="sweep-root", password="pw-12345678")
    client.force_login(admin)
    stored_endpoint = NotificationEndpoint.objects.get(account=account)
    stored_parameter = Parameter.objects.get(account=account, name="db/password")
    pages = [
        client.get(path)
        for path in (
            "/admin/notifications/notificationendpoint/",
            f"/admin/notifications/notificationendpoint/{stored_endpoint.pk}/change/",
            "/admin/parameters/parameter/",
            f"/admin/parameters/parameter/{stored_parameter.pk}/change/",
        )
    ]
    assert [page.status_code for page in pages] == [200, 200, 200, 200]

    dump = whole_database()
    answers = "\n".join(response.content.decode() for response in reads + pages)
    for what, secret in secrets.items():
        assert secret not in dump, f"{what} stored in plaintext"
        assert secret not in caplog.text, f"{what} logged"
        assert secret not in answers, f"{what} answered again"
    # The sweep is real: public identifiers of the same objects are there.
    assert created["clientId"] in dump
    assert "db/password" in dump
    assert "https://93.184.215.14/hook" in dump

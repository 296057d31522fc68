"""No client secret, API key or token is stored or logged in plaintext."""

import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection

from accounts import services

pytestmark = pytest.mark.django_db

TABLES = [
    "oauth2_provider_application",
    "oauth2_provider_accesstoken",
    "accounts_applicationaccess",
    "accounts_apikey",
    "django_session",
]


def dump_tables() -> str:
    out = []
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT * FROM {table}")
            out.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(out)


def test_secrets_tokens_and_keys_are_not_in_the_database_or_logs(client, account, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    call_command("create_application_access", "--account", "acme", "--name", "cli", "--json")
    created = json.loads(capsys.readouterr().out)
    response = client.post(
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
    token = response.json()["access_token"]
    client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {token}")
    _, raw_key = services.api_key_create(account=account, name="k")

    dump = dump_tables()
    for secret in (created["clientSecret"], token, raw_key):
        assert secret not in dump
        assert secret not in caplog.text
    assert created["clientId"] in dump  # the dump is real: the public id is there

"""Endpoint secrets: Standard Webhooks format, encrypted under a key derived from SECRET_KEY, rotatable."""

import base64
import hashlib
import hmac
import logging

import pytest
from django.core.management import call_command

from notifications import crypto, services
from notifications.models import NotificationEndpoint

pytestmark = pytest.mark.django_db


def test_secrets_are_whsec_base64_of_32_random_bytes():
    secrets = {crypto.secret_generate() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(crypto.secret_key_bytes(secret)) == 32


def test_the_signature_matches_the_standard_webhooks_definition():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"data":{},"timestamp":"2026-01-01T00:00:00.000Z","type":"meter.flushed"}'
    expected = base64.b64encode(
        hmac.new(b"k" * 32, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert (
        services.webhook_signature(secret=secret, webhook_id="msg_1", timestamp=1700000000, body=body)
        == f"v1,{expected}"
    )


def test_the_stored_value_is_not_the_secret_and_decrypts_to_it(account, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint, secret = services.notification_endpoint_create(
        account=account, url="https://93.184.215.14/h", event_types=["meter.flushed"]
    )
    stored = NotificationEndpoint.objects.values_list("secret_encrypted", flat=True).get()
    assert secret not in stored
    assert crypto.secret_decrypt(stored) == secret
    assert secret not in caplog.text


def test_rotating_secret_key_keeps_secrets_usable_and_the_command_reencrypts(account, settings, capsys):
    endpoint, secret = services.notification_endpoint_create(
        account=account, url="https://93.184.215.14/h", event_types=["meter.flushed"]
    )
    old_token = NotificationEndpoint.objects.get().secret_encrypted
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = (
        "a-brand-new-secret-key-" + "x" * 40,
        [settings.SECRET_KEY],
    )
    assert services.notification_endpoint_secret(endpoint=NotificationEndpoint.objects.get()) == secret

    call_command("rotate_notification_secrets")
    assert capsys.readouterr().out.strip() == "Re-encrypted 1 endpoint secret(s)."
    new_token = NotificationEndpoint.objects.get().secret_encrypted
    assert new_token != old_token

    settings.SECRET_KEY_FALLBACKS = []  # the old key is gone: the re-encrypted secret still opens
    assert services.notification_endpoint_secret(endpoint=NotificationEndpoint.objects.get()) == secret
    with pytest.raises(crypto.SecretUnreadable):
        crypto.secret_decrypt(old_token)

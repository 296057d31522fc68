"""Sensitive values at rest: never plaintext in the table, the SQL or the logs; keys rotate; bad keys fail loudly."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from parameters import crypto, services
from parameters.exceptions import (
    ParameterDecryptionFailed,
    ParameterEncryptionKeyInvalid,
    ParameterEncryptionKeyMissing,
)
from parameters.models import Parameter
from tests.parameters.conftest import TEST_KEY

pytestmark = pytest.mark.django_db

SECRET = "pa55w0rd-that-must-never-be-stored-in-clear"


def table_dump() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM parameters_parameter")
        return "\n".join(repr(row) for row in cursor.fetchall())


def test_the_table_holds_no_sensitive_plaintext(api, account, caplog):
    caplog.set_level(logging.DEBUG)
    with CaptureQueriesContext(connection) as queries:
        assert (
            api.post(
                "/parameters", {"name": "db/password", "type": "sensitive", "value": SECRET}, format="json"
            ).status_code
            == 201
        )
        assert (
            api.patch("/parameters/db/password", {"value": SECRET + "-v2"}, format="json").status_code == 200
        )
        services.parameter_create(account=account, name="db/user", type="standard", value="plain-user")
        assert api.get("/parameters/db/password").status_code == 200
        assert api.get("/parameters").status_code == 200
        assert services.parameter_resolve(account=account, name="db/password") == SECRET + "-v2"

    dump = table_dump()
    assert SECRET not in dump
    assert "plain-user" in dump  # the dump is real: the standard value is there
    stored = Parameter.objects.get(name="db/password")
    assert stored.value == ""
    assert stored.encrypted_value.startswith("gAAAAA")  # a Fernet token
    sql = "\n".join(query["sql"] for query in queries.captured_queries)
    assert "plain-user" in sql  # the captured SQL carries its parameters
    assert SECRET not in sql
    assert SECRET not in caplog.text


def test_the_database_refuses_plaintext_in_a_sensitive_row(account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Parameter.objects.create(
            account=account, name="x", type="sensitive", value=SECRET, encrypted_value=crypto.encrypt(SECRET)
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Parameter.objects.create(account=account, name="y", type="sensitive", value="", encrypted_value="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Parameter.objects.create(account=account, name="z", type="Sensitive", value="", encrypted_value="t")
    assert Parameter.objects.count() == 0


def test_key_rotation_add_a_key_rotate_drop_the_old_key(settings, account, other_account, capsys):
    values = {f"secret/{index}": f"value-{index}" for index in range(5)}
    for name, value in values.items():
        services.parameter_create(account=account, name=name, type="sensitive", value=value)
    services.parameter_create(account=other_account, name="theirs", type="sensitive", value="their-value")
    services.parameter_create(account=account, name="plain", type="standard", value="plain-value")
    updated_before = dict(Parameter.objects.values_list("name", "updated_at"))
    new_key = Fernet.generate_key().decode()

    settings.PARAMETER_ENCRYPTION_KEYS = [new_key, TEST_KEY]
    call_command("rotate_parameter_keys", "--batch-size", "2")
    assert capsys.readouterr().out.splitlines() == [
        "rotated 2/6 sensitive parameter values",
        "rotated 4/6 sensitive parameter values",
        "rotated 6/6 sensitive parameter values",
        "done: 6 sensitive parameter value(s) re-encrypted with the newest key",
    ]

    settings.PARAMETER_ENCRYPTION_KEYS = [new_key]
    for name, value in values.items():
        assert services.parameter_resolve(account=account, name=name) == value
    assert services.parameter_resolve(account=other_account, name="theirs") == "their-value"
    assert services.parameter_resolve(account=account, name="plain") == "plain-value"
    assert dict(Parameter.objects.values_list("name", "updated_at")) == updated_before


def test_without_rotation_dropping_the_old_key_breaks_decryption(settings, account):
    services.parameter_create(account=account, name="s", type="sensitive", value=SECRET)
    settings.PARAMETER_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ParameterDecryptionFailed):
        services.parameter_resolve(account=account, name="s")


def test_a_wrong_key_is_an_explicit_error_never_the_ciphertext(settings, account, caplog):
    services.parameter_create(account=account, name="s", type="sensitive", value=SECRET)
    token = Parameter.objects.get().encrypted_value
    wrong_key = Fernet.generate_key().decode()
    settings.PARAMETER_ENCRYPTION_KEYS = [wrong_key]
    with pytest.raises(ParameterDecryptionFailed) as excinfo:
        services.parameter_resolve(account=account, name="s")
    assert (excinfo.value.status, excinfo.value.code) == (500, "PARAMETER_DECRYPTION_FAILED")
    assert excinfo.value.message.startswith("Parameter 's': A sensitive parameter cannot be decrypted")
    assert token not in excinfo.value.message
    # Operators see it in the log, without token, key or value.
    assert caplog.messages == [
        f"sensitive parameter 's' of account {account.pk} cannot be decrypted with the configured keys"
    ]
    for secret in (token, wrong_key, TEST_KEY, SECRET):
        assert secret not in caplog.text


def test_rotating_with_a_wrong_key_list_stops_with_an_explicit_error(settings, account, capsys):
    services.parameter_create(account=account, name="s", type="sensitive", value=SECRET)
    token = Parameter.objects.get().encrypted_value
    settings.PARAMETER_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError) as excinfo:
        call_command("rotate_parameter_keys")
    assert str(excinfo.value).startswith("PARAMETER_DECRYPTION_FAILED: Parameter 's' of account ")
    assert Parameter.objects.get().encrypted_value == token


def test_an_invalid_key_is_an_explicit_error(settings, api, caplog):
    settings.PARAMETER_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ParameterEncryptionKeyInvalid) as excinfo:
        crypto.encrypt("x")
    assert excinfo.value.message.startswith("Parameter encryption key number 1 (newest first) is not a valid")
    response = api.post("/parameters", {"name": "s", "type": "sensitive", "value": SECRET}, format="json")
    assert response.status_code == 500
    assert response.json()["code"] == "PARAMETER_ENCRYPTION_KEY_INVALID"
    assert "not-a-fernet-key" not in response.content.decode()
    assert "parameter encryption key number 1 (newest first) is not a valid Fernet key" in caplog.messages
    assert "not-a-fernet-key" not in caplog.text
    assert Parameter.objects.count() == 0


def test_a_missing_key_is_an_explicit_error_when_the_key_file_is_off(settings, account):
    settings.PARAMETER_ENCRYPTION_KEYS = []
    settings.PARAMETER_KEY_FILE = ""
    with pytest.raises(ParameterEncryptionKeyMissing) as excinfo:
        services.parameter_create(account=account, name="s", type="sensitive", value=SECRET)
    assert (excinfo.value.status, excinfo.value.code) == (500, "PARAMETER_ENCRYPTION_KEY_MISSING")
    # Standard parameters need no key.
    assert services.parameter_create(account=account, name="p", type="standard", value="v").name == "p"


def test_embedded_default_generates_and_keeps_a_key_file_with_a_warning(settings, account, tmp_path, caplog):
    key_file = tmp_path / "var" / "parameter.key"
    settings.PARAMETER_ENCRYPTION_KEYS = []
    settings.PARAMETER_KEY_FILE = str(key_file)
    caplog.set_level(logging.WARNING, logger="parameters.crypto")
    services.parameter_create(account=account, name="s", type="sensitive", value=SECRET)

    key = key_file.read_text().strip()
    Fernet(key)  # a valid key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "PARAMETER_ENCRYPTION_KEYS is not set" in caplog.text
    assert str(key_file) in caplog.text
    assert key not in caplog.text
    assert os.listdir(key_file.parent) == ["parameter.key"]  # no temporary file left behind
    # The same key is used from then on, and it decrypts.
    assert services.parameter_resolve(account=account, name="s") == SECRET
    assert key_file.read_text().strip() == key
    settings.PARAMETER_ENCRYPTION_KEYS = [key]
    assert services.parameter_resolve(account=account, name="s") == SECRET


def test_an_existing_key_file_is_never_overwritten(settings, tmp_path):
    key_file = tmp_path / "parameter.key"
    key = Fernet.generate_key().decode()
    key_file.write_text(key + "\n")
    settings.PARAMETER_ENCRYPTION_KEYS = []
    settings.PARAMETER_KEY_FILE = str(key_file)
    token = crypto.encrypt("x")
    assert key_file.read_text() == key + "\n"
    assert Fernet(key).decrypt(token.encode()) == b"x"


def test_keys_are_read_at_call_time_and_accept_a_comma_separated_string(settings):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.PARAMETER_ENCRYPTION_KEYS = f" {first} , {second} "
    token = crypto.encrypt("x")
    assert Fernet(first).decrypt(token.encode()) == b"x"
    settings.PARAMETER_ENCRYPTION_KEYS = [second, first]
    assert Fernet(second).decrypt(crypto.encrypt("y").encode()) == b"y"
    assert crypto.decrypt(token) == "x"

"""Every parameters test runs with a known key list and never touches the real key file in var/."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from parameters import services

TEST_KEY = Fernet.generate_key().decode("ascii")


@pytest.fixture(autouse=True)
def _parameter_keys(settings, tmp_path):
    settings.PARAMETER_ENCRYPTION_KEYS = [TEST_KEY]
    settings.PARAMETER_KEY_FILE = str(tmp_path / "parameter_encryption.key")


@pytest.fixture
def make_parameter(account):
    def make(name="group/name", type="standard", value="v", description="", account=account):
        return services.parameter_create(
            account=account, name=name, type=type, value=value, description=description
        )

    return make

"""accounts.authentication: credentials to a principal, through the cache; identity headers."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts import authentication
from accounts.credentials import principal_cache, token_cache_key
from accounts.models import ApplicationAccess
from config.api.errors import Forbidden
from tests.collection.conftest import data_url, make_collector
from tests.conftest import issue_token, make_access

pytestmark = pytest.mark.django_db


def test_x_account_id_is_compared_as_a_uuid_in_any_case(api, account):
    # Issue 21: a client that prints UUIDs in upper case is the same account.
    assert api.get("/meter-types", HTTP_X_ACCOUNT_ID=str(account.pk).upper()).status_code == 200
    assert api.get("/meter-types", HTTP_X_ACCOUNT_ID=f" {str(account.pk).upper()} ").status_code == 200
    collector = make_collector(account)
    sent = api.post(
        data_url(collector), {"data": [1]}, format="json", HTTP_X_ACCOUNT_ID=str(account.pk).upper()
    )
    assert sent.status_code == 200


@pytest.mark.parametrize("header", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_an_x_account_id_of_another_or_no_account_is_403(api, header):
    response = api.get("/meter-types", HTTP_X_ACCOUNT_ID=header)

    assert (response.status_code, response.json()["code"]) == (403, "ACCOUNT_MISMATCH")


def test_x_application_id_is_compared_as_a_uuid_in_any_case_or_as_the_client_id(account):
    access, secret = make_access(account)
    token = issue_token(access, secret)
    headers = {"authorization": f"Bearer {token}"}

    for named in (str(access.pk).upper(), access.client_id):
        principal = authentication.principal_from_headers({**headers, "x-application-id": named})
        assert principal.application_id == access.pk
    with pytest.raises(Forbidden):
        authentication.principal_from_headers({**headers, "x-application-id": access.client_id.upper() + "X"})


def test_a_lookup_fills_the_cache_and_records_the_use_once(account):
    access, secret = make_access(account)
    token = issue_token(access, secret)
    ApplicationAccess.objects.filter(pk=access.pk).update(last_used_at=None)
    headers = {"authorization": f"Bearer {token}"}

    assert authentication.cached_principal(headers) is None  # not looked up yet
    principal = authentication.principal_from_headers(headers)
    used = ApplicationAccess.objects.get(pk=access.pk).last_used_at
    assert used is not None and used <= timezone.now()
    ApplicationAccess.objects.filter(pk=access.pk).update(last_used_at=None)

    assert authentication.cached_principal(headers) == principal
    assert authentication.principal_from_headers(headers) == principal
    assert ApplicationAccess.objects.get(pk=access.pk).last_used_at is None  # served from the cache
    assert principal_cache.get(token_cache_key(token)) == principal

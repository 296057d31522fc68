"""Shared fixtures: accounts, Application Accesses, tokens and API clients.

The suite runs against real PostgreSQL and Redis (``make test`` sets DATABASE_URL and REDIS_URL).
Rate limits are off by default so functional tests can call freely; tests of rate limits turn
them on with the ``rate_limits`` fixture.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.credentials import principal_cache
from config.api.ratelimit import limiter


@pytest.fixture(autouse=True)
def _isolated_caches(settings):
    settings.RATE_LIMIT_ENABLED = False
    principal_cache.clear()
    yield
    principal_cache.clear()


@pytest.fixture
def rate_limits(settings):
    settings.RATE_LIMIT_ENABLED = True
    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture
def account(db):
    return account_services.account_get_or_create(name="acme")


@pytest.fixture
def other_account(db):
    return account_services.account_get_or_create(name="globex")


def make_access(account, name="tests", scopes=("all",)):
    access, secret = account_services.application_access_create(
        account=account, name=name, scopes=list(scopes)
    )
    return access, secret


def issue_token(access, secret, scope=None) -> str:
    return account_services.access_token_issue(
        client_id=access.client_id, client_secret=secret, scope=scope
    ).access_token


def client_for(account, scopes=("all",), name="tests") -> APIClient:
    access, secret = make_access(account, name=name, scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(access, secret)}")
    client.access = access
    client.account = account
    return client


@pytest.fixture
def api(account) -> APIClient:
    """A client holding every scope for ``account``."""
    return client_for(account)


@pytest.fixture
def other_api(other_account) -> APIClient:
    """A client of another account, for tenancy checks."""
    return client_for(other_account, name="other")


@pytest.fixture
def client_factory(db):
    return client_for

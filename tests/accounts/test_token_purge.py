"""Expired OAuth access tokens are purged by beat, daily; live ones keep working."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from accounts.tasks import purge_expired_access_tokens
from tests.conftest import issue_token, make_access

pytestmark = pytest.mark.django_db


def test_beat_runs_the_purge_daily():
    scheduled = PeriodicTask.objects.get(name="accounts: purge expired access tokens")

    assert (scheduled.task, scheduled.enabled, scheduled.crontab.hour, scheduled.crontab.minute) == (
        "accounts.purge_expired_access_tokens",
        True,
        "4",
        "13",
    )
    assert str(scheduled.crontab.timezone) == "UTC"


def test_the_purge_deletes_expired_tokens_and_keeps_live_ones(account):
    access, secret = make_access(account)
    with time_machine.travel(timezone.now() - timedelta(hours=2), tick=False):
        issue_token(access, secret)
        issue_token(access, secret)
    live = issue_token(access, secret)

    assert purge_expired_access_tokens.apply().get() == 2
    assert AccessToken.objects.count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {live}")
    assert client.get("/meter-types").status_code == 200
    assert purge_expired_access_tokens.apply().get() == 0

"""Seed 004's meter subscription lookups over the billing catalogue."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.models import Account
from billing.models import Price, Product, Subscription
from tests.conftest import client_for
from tests.metering.factories import assert_error
from tests.metering.ledger.conftest import NOW, make_meter, make_type

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def reporter(account) -> APIClient:
    return client_for(account, scopes=["meter-report"], name="billing")


@pytest.fixture
def api_calls(account):
    meter_type = make_type(account, name="API calls", api_name="api_calls")
    make_meter(meter_type, user_id="cus_1")
    return meter_type


@pytest.fixture
def catalogue(account, api_calls):
    storage = make_type(account, name="Storage", api_name="storage")
    api_product = Product.objects.create(account=account, name="API plan")
    storage_product = Product.objects.create(account=account, name="Storage plan")
    price = Price.objects.create(
        account=account, product=api_product, meter_type=api_calls, unit_amount=Decimal("0.01")
    )
    Price.objects.create(account=account, product=storage_product, meter_type=storage, unit_amount=2)
    active = Subscription.objects.create(account=account, customer_id="cus_1")
    active.products.set([api_product, storage_product])
    paused = Subscription.objects.create(
        account=account, customer_id="cus_2", status=Subscription.Status.PAUSED
    )
    paused.products.set([api_product])
    only_storage = Subscription.objects.create(account=account, customer_id="cus_3")
    only_storage.products.set([storage_product])
    return {"subscription": active, "product": api_product, "price": price, "storage": storage}


def test_subscriptions_of_a_meter_by_id_and_by_name(reporter, api_calls, catalogue):
    expected = {
        "meterId": str(api_calls.pk),
        "meterName": "api_calls",
        "subscriptions": [
            {
                "id": str(catalogue["subscription"].pk),
                "customerId": "cus_1",
                "status": "active",
                "createdAt": "2027-01-10T12:00:00.000Z",
                "products": [
                    {
                        "id": str(catalogue["product"].pk),
                        "name": "API plan",
                        "prices": [{"id": str(catalogue["price"].pk), "unitAmount": 0.01, "currency": "USD"}],
                    }
                ],
            }
        ],
    }

    by_id = reporter.get(f"/billing/meters/{api_calls.pk}/subscriptions")
    by_name = reporter.get("/billing/meters/subscriptions?meterName=api_calls")

    assert (by_id.status_code, by_id.json()) == (200, expected)
    assert (by_name.status_code, by_name.json()) == (200, expected)


def test_a_meter_no_price_uses_has_no_subscriptions(account, reporter, catalogue):
    unused = make_type(account, name="Unused", api_name="unused")
    assert reporter.get(f"/billing/meters/{unused.pk}/subscriptions").json() == {
        "meterId": str(unused.pk),
        "meterName": "unused",
        "subscriptions": [],
    }


def test_subscription_lookup_errors(account, other_account, reporter, catalogue):
    theirs = make_type(other_account, name="Theirs", api_name="theirs")
    assert_error(reporter.get("/billing/meters/subscriptions"), 400, "METER_IDENTIFIER_REQUIRED")
    assert_error(reporter.get("/billing/meters/subscriptions?meterName=nope"), 404, "METER_NOT_FOUND")
    assert_error(reporter.get("/billing/meters/subscriptions?meterName=theirs"), 404, "METER_NOT_FOUND")
    assert_error(reporter.get(f"/billing/meters/{theirs.pk}/subscriptions"), 404, "METER_NOT_FOUND")
    assert_error(reporter.get("/billing/meters/not-a-uuid/subscriptions"), 404, "METER_NOT_FOUND")
    reader = client_for(account, scopes=["usage-metering:read:usage"], name="reader")
    assert_error(reader.get("/billing/meters/subscriptions?meterName=api_calls"), 403, "INSUFFICIENT_SCOPE")
    Account.objects.filter(pk=account.pk).update(has_billing_license=False)
    assert_error(reporter.get("/billing/meters/subscriptions?meterName=api_calls"), 403, "LICENSE.REQUIRED")
    assert_error(
        reporter.get(f"/billing/meters/{catalogue['storage'].pk}/subscriptions"), 403, "LICENSE.REQUIRED"
    )

"""The billing catalogue in the admin: products with prices, subscriptions, per account."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from billing.models import Price, Product, Subscription
from tests.metering.ledger.conftest import NOW, make_type

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["metering", "billing"]))
    account_services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def rows(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_products_with_prices_and_subscriptions_in_the_admin(staff, account, other_account):
    meter_type = make_type(account)
    make_type(other_account, name="Theirs", api_name="theirs")
    response = staff.post(
        "/admin/billing/product/add/",
        {
            "name": "API plan",
            "description": "Calls",
            "prices-TOTAL_FORMS": "1",
            "prices-INITIAL_FORMS": "0",
            "prices-MIN_NUM_FORMS": "0",
            "prices-MAX_NUM_FORMS": "1000",
            "prices-0-meter_type": str(meter_type.pk),
            "prices-0-unit_amount": "0.01",
            "prices-0-currency": "EUR",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    product = Product.objects.get()
    price = Price.objects.get()
    assert (product.account_id, price.account_id, price.meter_type_id, price.unit_amount, price.currency) == (
        account.pk,
        account.pk,
        meter_type.pk,
        Decimal("0.01"),
        "EUR",
    )
    assert "Theirs" not in staff.get("/admin/billing/product/add/").content.decode()

    response = staff.post(
        "/admin/billing/subscription/add/",
        {"customer_id": "cus_1", "status": "active", "products": [str(product.pk)]},
    )
    assert response.status_code == 302
    subscription = Subscription.objects.get()
    assert list(subscription.products.all()) == [product]

    staff.post(
        "/admin/billing/subscription/", {"action": "pause", "_selected_action": [str(subscription.pk)]}
    )
    subscription.refresh_from_db()
    assert subscription.status == "paused"
    assert rows(staff.get("/admin/billing/subscription/?status__exact=paused")) == [subscription]
    assert rows(staff.get("/admin/billing/price/?q=API")) == [price]

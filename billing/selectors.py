"""Reads of the billing catalogue: seed 004's meter subscription lookups."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch

from accounts.models import Account
from billing.exceptions import LicenseRequired
from billing.models import Price, Product, Subscription
from config.api.serializers import format_timestamp
from metering.models import MeterType


def check_license(account_id: uuid.UUID) -> None:
    """The lookups answer 403 LICENSE.REQUIRED to an account without the billing licence."""
    if not Account.objects.filter(pk=account_id, has_billing_license=True).exists():
        raise LicenseRequired()


def meter_subscriptions(*, meter_type: MeterType) -> dict[str, Any]:
    """Active subscriptions holding a product with a price on this meter, with those products."""
    products = (
        Product.objects.filter(prices__meter_type=meter_type)
        .distinct()
        .prefetch_related(
            Prefetch("prices", queryset=Price.objects.filter(meter_type=meter_type).order_by("created_at"))
        )
    )
    subscriptions = (
        Subscription.objects.filter(
            account_id=meter_type.account_id,
            status=Subscription.Status.ACTIVE,
            products__prices__meter_type=meter_type,
        )
        .distinct()
        .order_by("created_at")
        .prefetch_related(Prefetch("products", queryset=products.order_by("name")))
    )
    return {
        "meterId": str(meter_type.pk),
        "meterName": meter_type.api_name,
        "subscriptions": [
            {
                "id": str(subscription.pk),
                "customerId": subscription.customer_id,
                "status": subscription.status,
                "createdAt": format_timestamp(subscription.created_at),
                "products": [
                    {
                        "id": str(product.pk),
                        "name": product.name,
                        "prices": [
                            {
                                "id": str(price.pk),
                                "unitAmount": _amount(price.unit_amount),
                                "currency": price.currency,
                            }
                            for price in product.prices.all()
                        ],
                    }
                    for product in subscription.products.all()
                ],
            }
            for subscription in subscriptions
        ],
    }


def _amount(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)

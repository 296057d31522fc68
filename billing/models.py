"""The billing catalogue: products, their prices per unit of a meter type's usage, and customers'
subscriptions to products (seed 004's subscription lookups read them).

The tables, constraint and index names are the ones the catalogue had in the metering app (the
models moved here without moving data: see migrations/0001_initial.py), hence ``metering_``.
"""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Account
from metering.models import AMOUNT_DIGITS, MeterType


class Product(models.Model):
    """Billing catalogue: something sold; its prices link it to meter types."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="products")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "metering_product"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="metering_product_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class Price(models.Model):
    """A product's price per unit of a meter type's usage."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="prices")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="prices")
    meter_type = models.ForeignKey(MeterType, on_delete=models.PROTECT, related_name="prices")
    unit_amount = models.DecimalField(**AMOUNT_DIGITS, validators=[MinValueValidator(0)])
    currency = models.CharField(max_length=3, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "metering_price"
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__gte=0), name="metering_price_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product} · {self.unit_amount.normalize():f} {self.currency}"


class Subscription(models.Model):
    """A customer's subscription to products; an active one can report usage to their meters."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="subscriptions")
    customer_id = models.CharField(max_length=320)
    products = models.ManyToManyField(Product, related_name="subscriptions", blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "metering_subscription"
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "paused"]), name="metering_subscription_status"
            ),
        ]
        indexes = [models.Index(fields=["account", "customer_id"], name="metering_subscription_customer")]

    def __str__(self) -> str:
        return f"{self.customer_id} ({self.status})"

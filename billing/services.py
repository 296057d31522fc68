"""Writes of the billing catalogue (products, prices, subscriptions): the admin's actions call these."""

from __future__ import annotations

from django.db import models, transaction

from billing.models import Price, Product, Subscription
from config.api.errors import ValidationFailed

CatalogueItem = Product | Price | Subscription


def _check_same_account(instance: CatalogueItem, *related: models.Model | None) -> None:
    for other in related:
        if other is not None and getattr(other, "account_id", None) != instance.account_id:
            raise ValidationFailed(
                f"{str(other._meta.verbose_name).capitalize()} belongs to another account."
            )


@transaction.atomic
def catalogue_save(*, instance: CatalogueItem) -> CatalogueItem:
    """Save a product, price or subscription after its field rules and account checks."""
    if isinstance(instance, Price):
        _check_same_account(instance, instance.product, instance.meter_type)
    instance.full_clean(validate_constraints=False)
    instance.save()
    return instance


@transaction.atomic
def subscription_products_set(*, subscription: Subscription, products: list[Product]) -> Subscription:
    _check_same_account(subscription, *products)
    subscription.products.set(products)
    return subscription


@transaction.atomic
def subscriptions_set_status(*, subscriptions: list[Subscription], status: str) -> int:
    """Pause or resume subscriptions (a paused one is left out of the meter subscription lookups)."""
    if status not in Subscription.Status.values:
        raise ValidationFailed.for_field("status", "status must be active or paused.")
    return Subscription.objects.filter(pk__in=[s.pk for s in subscriptions]).update(status=status)


@transaction.atomic
def catalogue_delete(*, instance: CatalogueItem) -> None:
    instance.delete()

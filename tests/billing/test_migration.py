"""The catalogue moved from the metering app to billing without losing a row or a permission."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("metering", "0006_metered_record_execution_ref"), ("billing", None)]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    # The state of the targets, with today's content types and permissions (nothing moves them back).
    nodes = [target for target in targets if target[1] is not None]
    nodes += [leaf for leaf in executor.loader.graph.leaf_nodes() if leaf[0] in ("contenttypes", "auth")]
    return executor.loader.project_state(nodes).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_products_prices_subscriptions_and_permissions_survive_the_move(account):
    old = _migrate(BEFORE)
    MeterType = old.get_model("metering", "MeterType")
    Product = old.get_model("metering", "Product")
    Price = old.get_model("metering", "Price")
    Subscription = old.get_model("metering", "Subscription")
    OldContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    meter_type = MeterType.objects.create(
        account_id=account.pk,
        name="API calls",
        api_name="api_calls",
        unit="calls",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="UTC",
        active_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    product = Product.objects.create(account_id=account.pk, name="API plan")
    price = Price.objects.create(
        account_id=account.pk, product=product, meter_type=meter_type, unit_amount=Decimal("0.01")
    )
    subscription = Subscription.objects.create(account_id=account.pk, customer_id="cus_1", status="paused")
    subscription.products.set([product])
    product_type, _ = OldContentType.objects.get_or_create(app_label="metering", model="product")
    OldContentType.objects.filter(app_label="billing").delete()
    permission, _ = Permission.objects.get_or_create(
        content_type=product_type, codename="change_product", defaults={"name": "Can change product"}
    )

    new = _migrate(_latest())

    moved = new.get_model("billing", "Subscription").objects.get()
    assert (moved.pk, moved.customer_id, moved.status) == (subscription.pk, "cus_1", "paused")
    assert [p.pk for p in moved.products.all()] == [product.pk]
    moved_price = new.get_model("billing", "Price").objects.get()
    assert (moved_price.pk, moved_price.product_id, moved_price.meter_type_id, moved_price.unit_amount) == (
        price.pk,
        product.pk,
        meter_type.pk,
        Decimal("0.01"),
    )
    permission = new.get_model("auth", "Permission").objects.get(pk=permission.pk)
    assert (permission.content_type.app_label, permission.content_type.model) == ("billing", "product")
    assert (
        not new.get_model("contenttypes", "ContentType")
        .objects.filter(app_label="metering", model__in=["product", "price", "subscription"])
        .exists()
    )


@pytest.mark.django_db(transaction=True)
def test_the_move_runs_backwards_with_its_rows(account):
    from billing.models import Product

    Product.objects.create(account=account, name="API plan")

    old = _migrate(BEFORE)

    assert list(old.get_model("metering", "Product").objects.values_list("name", flat=True)) == ["API plan"]
    assert (
        old.get_model("contenttypes", "ContentType")
        .objects.filter(app_label="metering", model="product")
        .exists()
    )
    new = _migrate(_latest())
    assert list(new.get_model("billing", "Product").objects.values_list("name", flat=True)) == ["API plan"]


@pytest.fixture(autouse=True)
def fresh_content_type_cache():
    yield
    ContentType.objects.clear_cache()

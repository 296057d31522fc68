"""The billing catalogue moves here from the metering app without moving data: the tables keep their
names (``db_table``), so these operations change Django"s state only. metering 0007 removes the
models from metering"s state; the content types (and so the admin permissions) move with them."""

import uuid

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

MODELS = ("product", "price", "subscription")


def content_types_move(apps, schema_editor, source="metering", target="billing"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def content_types_move_back(apps, schema_editor):
    content_types_move(apps, schema_editor, source="billing", target="metering")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("metering", "0007_catalogue_to_billing"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Product",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("name", models.CharField(max_length=100)),
                        ("description", models.CharField(blank=True, default="", max_length=200)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("account", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="products", to="accounts.account")),
                    ],
                    options={
                        "db_table": "metering_product",
                        "ordering": ["name"],
                    },
                ),
                migrations.CreateModel(
                    name="Price",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("unit_amount", models.DecimalField(decimal_places=12, max_digits=38, validators=[django.core.validators.MinValueValidator(0)])),
                        ("currency", models.CharField(default="USD", max_length=3)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("account", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="prices", to="accounts.account")),
                        ("meter_type", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="prices", to="metering.metertype")),
                        ("product", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="prices", to="billing.product")),
                    ],
                    options={
                        "db_table": "metering_price",
                        "ordering": ["created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="Subscription",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("customer_id", models.CharField(max_length=320)),
                        ("status", models.CharField(choices=[("active", "Active"), ("paused", "Paused")], default="active", max_length=10)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("account", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="subscriptions", to="accounts.account")),
                        ("products", models.ManyToManyField(blank=True, related_name="subscriptions", to="billing.product")),
                    ],
                    options={
                        "db_table": "metering_subscription",
                        "ordering": ["created_at"],
                    },
                ),
                migrations.AddConstraint(
                    model_name="product",
                    constraint=models.UniqueConstraint(fields=("account", "name"), name="metering_product_unique_name"),
                ),
                migrations.AddConstraint(
                    model_name="price",
                    constraint=models.CheckConstraint(condition=models.Q(("unit_amount__gte", 0)), name="metering_price_amount_not_negative"),
                ),
                migrations.AddIndex(
                    model_name="subscription",
                    index=models.Index(fields=["account", "customer_id"], name="metering_subscription_customer"),
                ),
                migrations.AddConstraint(
                    model_name="subscription",
                    constraint=models.CheckConstraint(condition=models.Q(("status__in", ["active", "paused"])), name="metering_subscription_status"),
                ),
            ],
        ),
        migrations.RunPython(content_types_move, content_types_move_back),
    ]

"""The billing catalogue (Product, Price, Subscription) moves to the billing app: removed from
metering's state only; the tables stay (billing 0001 takes them over under the same names)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_metered_record_execution_ref"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name="product", name="account"),
                migrations.RemoveField(model_name="subscription", name="products"),
                migrations.RemoveField(model_name="subscription", name="account"),
                migrations.DeleteModel(name="Price"),
                migrations.DeleteModel(name="Product"),
                migrations.DeleteModel(name="Subscription"),
            ],
        ),
    ]

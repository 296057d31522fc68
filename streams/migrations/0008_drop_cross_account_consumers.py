"""Issue 18: a stream once registered as a reader of another account's collector (its
``onlineCollector`` node named that collector's id) loses that registration: it never reads
that log again, and the log's pruning no longer waits for it. Readers of the stream's own
account's collectors stay as they are."""

from django.db import migrations

PREFIX = "stream:"


def drop_cross_account_consumers(apps, schema_editor):
    ConsumerOffset = apps.get_model("collection", "ConsumerOffset")
    Stream = apps.get_model("streams", "Stream")
    accounts = {str(stream): account for stream, account in Stream.objects.values_list("id", "account_id")}
    foreign = []
    for pk, consumer, collector_account in ConsumerOffset.objects.filter(
        consumer__startswith=PREFIX
    ).values_list("pk", "consumer", "collector__account_id"):
        owner = accounts.get(consumer[len(PREFIX) :])
        if owner is not None and owner != collector_account:
            foreign.append(pk)
    ConsumerOffset.objects.filter(pk__in=foreign).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("collection", "0002_received_at_index_and_schedules"),
        ("streams", "0007_output_delivery_outbox"),
    ]

    operations = [migrations.RunPython(drop_cross_account_consumers, migrations.RunPython.noop)]

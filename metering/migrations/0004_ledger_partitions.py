"""PostgreSQL: the usage ledger becomes a table range-partitioned by month on ``timestamp``.

The plain ``metering_usagerecord`` is rebuilt as a partitioned table of the same columns with
primary key ``(id, timestamp)``, a DEFAULT partition (no insert is ever refused) and one partition
per month of the existing rows plus the current month and ``LEDGER_PARTITION_MONTHS_AHEAD`` ahead;
the rows move over with their ids, the identity sequence continues where it was, and the table's
indexes (the customer/time btree, the BRIN on timestamp) are recreated on it, so on every
partition. Works on an empty and a non-empty ledger; the copy holds an EXCLUSIVE lock (reads go on,
writes wait), so on a large ledger run it in a quiet moment.

It also registers the daily beat task "metering: ledger partitions" (partitions ahead, then the
LEDGER_RETENTION_MONTHS retention), as 0002 does for the reset sweep.

Django's model state does not change: the model keeps ``id`` as its primary key (the identity
sequence keeps it unique) and only the database's key includes ``timestamp``, which partitioning
requires. On any other database (SQLite, the embedded default) the ledger stays a plain table and
this migration only registers the task.

The SQL lives in metering.partitions (raw SQL on the catalogue, no models), shared with the daily
task, so the conversion and the partitions created later are made the same way.
"""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "metering: ledger partitions"


def partition_ledger(apps, schema_editor):
    from metering.partitions import ledger_table_partition

    ledger_table_partition(using=schema_editor.connection.alias)


def unpartition_ledger(apps, schema_editor):
    from metering.partitions import ledger_table_unpartition

    ledger_table_unpartition(using=schema_editor.connection.alias)


def register_task(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    daily = {"minute": "17", "hour": "3", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
             "timezone": "UTC"}
    crontab = CrontabSchedule.objects.filter(**daily).order_by("id").first()
    if crontab is None:
        crontab = CrontabSchedule.objects.create(**daily)
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "metering.ledger_partitions_maintain",
            "crontab": crontab,
            "enabled": True,
            "description": "PostgreSQL: creates the usage ledger's monthly partitions for the current month and "
                           "LEDGER_PARTITION_MONTHS_AHEAD ahead (moving rows out of DEFAULT), then detaches the "
                           "months older than LEDGER_RETENTION_MONTHS. Safe to run at any time; does nothing on "
                           "SQLite.",
        },
    )
    # Tell a running beat (DatabaseScheduler) that its schedule changed; migrations send no signals.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unregister_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0003_ledger"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(partition_ledger, unpartition_ledger),
        migrations.RunPython(register_task, unregister_task),
    ]

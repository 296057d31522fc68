"""Pruning's index on received_at, and beat's schedule for the collection sweeps.

PostgreSQL gets a BRIN index (tiny, nearly free on the send-data insert, and batches arrive in
time order); SQLite a plain index. The periodic tasks live in django-celery-beat's tables, so
operators see and edit them in the admin.
"""

from django.db import migrations

SCHEDULES = [
    # (name, task, every, period)
    ("collection: provision and purge collectors", "collection.collectors_sweep", 1, "minutes"),
    ("collection: prune consumed batches", "collection.collected_batches_prune", 1, "hours"),
]


def create_received_at_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS collection_batch_received_brin "
            "ON collection_collectedbatch USING brin (received_at)"
        )
    else:
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS collection_batch_received "
            "ON collection_collectedbatch (collector_id, received_at)"
        )


def drop_received_at_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS collection_batch_received_brin")
    schema_editor.execute("DROP INDEX IF EXISTS collection_batch_received")


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})


def delete_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("collection", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_received_at_index, drop_received_at_index),
        migrations.RunPython(create_schedules, delete_schedules),
    ]

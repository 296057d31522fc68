"""Registers the daily purge of expired idempotency keys in django-celery-beat's tables (visible
and pausable in the admin under Periodic tasks). Without it the dedup table grows forever."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "metering: purge idempotency keys"


def register(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    daily = {"minute": "47", "hour": "3", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
             "timezone": "UTC"}
    crontab = CrontabSchedule.objects.filter(**daily).order_by("id").first() or CrontabSchedule.objects.create(**daily)
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "metering.purge_usage_dedup_keys",
            "crontab": crontab,
            "enabled": True,
            "description": "Deletes the usage ledger's idempotency keys older than IDEMPOTENCY_WINDOW_DAYS. Records "
                           "that old are refused (TIMESTAMP_TOO_OLD), so no purged key lets a replay count twice.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0004_ledger_partitions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register, unregister)]

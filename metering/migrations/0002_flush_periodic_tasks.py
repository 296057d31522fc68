"""Registers the reset sweep in django-celery-beat's tables, so operators see it in the admin
(Periodic tasks) and can pause it there. No schema change: the flush uses the tables of 0001.

The sweep runs every minute on a UTC crontab; beat only triggers it. Period boundaries are not
beat's business: they are stored per meter (``period_end``), computed in each meter type's
timezone by metering.periods, and the sweep resets whatever has passed.
"""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "metering: reset sweep"


def register_sweep(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_minute = {"minute": "*", "hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
                    "timezone": "UTC"}
    # Another app may have created the same crontab already (get_or_create would fail on duplicates).
    crontab = CrontabSchedule.objects.filter(**every_minute).order_by("id").first()
    if crontab is None:
        crontab = CrontabSchedule.objects.create(**every_minute)
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "metering.flush_due_meters",
            "crontab": crontab,
            "enabled": True,
            "description": "Flushes every meter whose period has ended (one metered record per meter and period), "
                           "resets it and starts its next period. Pausing it pauses all resets; they catch up "
                           "when it is enabled again.",
        },
    )
    # Tell a running beat (DatabaseScheduler) that its schedule changed; migrations send no signals.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unregister_sweep(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register_sweep, unregister_sweep)]

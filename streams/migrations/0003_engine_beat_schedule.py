"""Registers the engine's beat tasks in django-celery-beat's tables, so operators see (and can
pause or retime) them in the admin under Periodic tasks."""

from django.db import migrations

TASKS = [
    # (periodic task name, task, every, period)
    ("streams: emit timed-out aggregation sessions", "streams.sweep_session_timeouts", 30, "seconds"),
    ("streams: purge expired deduplication keys", "streams.purge_dedup_keys", 1, "hours"),
]


def register(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period in TASKS:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval,
                                                                   "enabled": True})


def unregister(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0002_engine"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register, unregister)]

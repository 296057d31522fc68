"""Registers the realtime catch-up sweep (every 5 s) in django-celery-beat's tables: any realtime
stream behind its collectors' logs gets a run queued, so a lost enqueue or a worker that was down
never leaves collected data waiting."""

from django.db import migrations

NAME = "streams: catch up realtime streams"


def register(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={"task": "streams.catch_up_realtime",
                                                               "interval": interval, "enabled": True})


def unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0003_engine_beat_schedule"),
    ]

    operations = [migrations.RunPython(register, unregister)]

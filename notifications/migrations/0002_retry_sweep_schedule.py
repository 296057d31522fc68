"""Registers the webhook retry sweep in django-celery-beat's tables, so operators see it in the
admin (Periodic tasks) and can pause it or change its interval there."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "notifications: retry sweep"


def register_sweep(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    # Another app's migration may have created the same interval already (get_or_create would
    # fail on duplicates): reuse the first one.
    interval = IntervalSchedule.objects.filter(every=30, period="seconds").order_by("id").first()
    if interval is None:
        interval = IntervalSchedule.objects.create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "notifications.sweep_due_deliveries",
            "interval": interval,
            "enabled": True,
            "description": "Attempts due webhook deliveries: retries after backoff, and first attempts "
                           "whose task was lost. Pausing it stops webhook retries.",
        },
    )
    # Tell a running beat (DatabaseScheduler) that its schedule changed; migrations send no signals.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unregister_sweep(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register_sweep, unregister_sweep)]

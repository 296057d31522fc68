"""Registers the daily purge of expired OAuth access tokens in django-celery-beat's tables (visible
and pausable in the admin under Periodic tasks). Without it every token ever issued stays."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "accounts: purge expired access tokens"


def register(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    daily = {"minute": "13", "hour": "4", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
             "timezone": "UTC"}
    crontab = CrontabSchedule.objects.filter(**daily).order_by("id").first() or CrontabSchedule.objects.create(**daily)
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "accounts.purge_expired_access_tokens",
            "crontab": crontab,
            "enabled": True,
            "description": "Deletes the OAuth access tokens whose lifetime (3600 s) has passed.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(register, unregister)]

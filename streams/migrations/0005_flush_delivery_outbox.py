"""The durable outbox of flushed metered records (``FlushDelivery``, written in the flush's
transaction, delivered by a worker) and its beat sweep, every 10 s, which delivers what an enqueue
lost after a commit (a process that died) and what waits for a retry."""

import django.db.models.deletion
from django.db import migrations, models

SWEEP_NAME = "streams: deliver flushed records"


def register(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(name=SWEEP_NAME, defaults={"task": "streams.sweep_flush_deliveries",
                                                                     "interval": interval, "enabled": True})


def unregister(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('streams', '0004_realtime_catch_up_schedule'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.AlterField(
            model_name='streamrun',
            name='trigger',
            field=models.CharField(choices=[('realtime', 'Realtime'), ('schedule', 'Schedule'), ('manual', 'Manual'), ('sessionTimeout', 'session timeout'), ('flush', 'Flush'), ('preview', 'Preview')], max_length=20),
        ),
        migrations.CreateModel(
            name='FlushDelivery',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('node_id', models.CharField(help_text='The Meter processor whose downstream nodes get the records.', max_length=100)),
                ('records', models.JSONField(default=list)),
                ('record_count', models.PositiveIntegerField(default=0)),
                ('created_at', models.DateTimeField()),
                ('next_attempt_at', models.DateTimeField()),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True, default='')),
                ('account', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.account')),
                ('stream', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='flush_deliveries', to='streams.stream')),
            ],
            options={
                'verbose_name': 'flush delivery',
                'verbose_name_plural': 'flush deliveries',
                'ordering': ['id'],
                'indexes': [models.Index(fields=['stream', 'node_id', 'id'], name='streams_flush_delivery_queue'), models.Index(fields=['next_attempt_at'], name='streams_flush_delivery_due')],
            },
        ),
        migrations.RunPython(register, unregister),
    ]

"""Metered records of a stream execution's flush: execution_ref, unique with the meter and period start."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('metering', '0005_dedup_purge_periodic_task'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='meteredrecord',
            options={'ordering': ['period_start', 'created_at']},
        ),
        migrations.RemoveConstraint(
            model_name='meteredrecord',
            name='metering_meteredrecord_unique_meter_period',
        ),
        migrations.AddField(
            model_name='meteredrecord',
            name='execution_ref',
            field=models.CharField(blank=True, default='', editable=False, max_length=255),
        ),
        migrations.AddConstraint(
            model_name='meteredrecord',
            constraint=models.UniqueConstraint(fields=('meter', 'period_start', 'execution_ref'), name='metering_meteredrecord_unique_meter_period'),
        ),
    ]

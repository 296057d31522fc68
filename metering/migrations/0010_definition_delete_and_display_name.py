"""Issue 21: deleting a used meter definition archives its type and releases its apiName (a new
definition may take it); a definition's displayName is a label, so the name is unique only among
the types the Usage Engine names."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_access_token_purge_periodic_task'),
        ('metering', '0009_meter_copies_unit_and_timezone'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='metertype',
            name='metering_metertype_unique_name',
        ),
        migrations.AddField(
            model_name='metertype',
            name='definition_deleted_at',
            field=models.DateTimeField(blank=True, editable=False, help_text='When its meter definition was deleted through /meter-definition (archived, apiName released).', null=True),
        ),
        migrations.AddConstraint(
            model_name='metertype',
            constraint=models.UniqueConstraint(condition=models.Q(('auto_create_meters', False)), fields=('account', 'name'), name='metering_metertype_unique_name'),
        ),
    ]

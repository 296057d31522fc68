"""Meters keep the unit and timezone their type had when they were created (seed 003); existing
meters take their type's current ones."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_from_types(apps, schema_editor):
    Meter = apps.get_model("metering", "Meter")
    MeterType = apps.get_model("metering", "MeterType")
    of_type = MeterType.objects.filter(pk=OuterRef("meter_type_id"))
    Meter.objects.update(
        unit=Subquery(of_type.values("unit")[:1]), timezone=Subquery(of_type.values("timezone")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [("metering", "0008_dedup_key_held_by_correction")]

    operations = [
        migrations.AddField(
            model_name="meter",
            name="unit",
            field=models.CharField(default="", help_text="Copied from the meter type at creation.", max_length=50),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="meter",
            name="timezone",
            field=models.CharField(
                default="Etc/UTC",
                help_text="Copied from the meter type at creation: the meter's period boundaries use it.",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(copy_from_types, migrations.RunPython.noop),
    ]

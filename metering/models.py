"""Meter types (what is metered), meters (who is metered) and metered records (flushed periods)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now as utc_now

from accounts.models import Account
from metering import validators

# Usage values and capacities: exact decimals, wide enough for any counter.
AMOUNT_DIGITS = {"max_digits": 38, "decimal_places": 12}


class MeterType(models.Model):
    """What is metered and how: unit, aggregation, capacity, thresholds, reset schedule, timezone.

    Meters copy capacity and thresholds at creation; they follow the type's unit, aggregation,
    timezone, reset schedule and active window. A schedule or timezone change applies from each
    meter's next period (its current ``period_end`` is already fixed).
    """

    class Aggregation(models.TextChoices):
        SUM = "SUM", "Sum of values"
        INCREMENT = "INCREMENT", "Count of records"
        MAX = "MAX", "Highest value"
        MIN = "MIN", "Lowest value"

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        ARCHIVED = "ARCHIVED", "Archived"

    DEFAULT_CATEGORY = "DEFAULT"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="meter_types")
    name = models.CharField(max_length=80, validators=[validators.validate_meter_type_name])
    description = models.CharField(max_length=200, blank=True, default="")
    external_ref = models.CharField(
        max_length=100, null=True, blank=True, help_text="The product's id in an external system; unique."
    )
    category = models.CharField(max_length=50, default=DEFAULT_CATEGORY)
    unit = models.CharField(max_length=50)
    aggregation = models.CharField(
        max_length=10, choices=Aggregation.choices, help_text="Cannot be changed once the type exists."
    )
    capacity = models.DecimalField(**AMOUNT_DIGITS, null=True, blank=True, validators=[MinValueValidator(0)])
    thresholds = models.JSONField(default=list, blank=True, validators=[validators.validate_thresholds])
    reset_cron = models.CharField(
        "reset schedule (cron)", max_length=100, validators=[validators.validate_cron],
        help_text="5-field crontab in the type's timezone, e.g. '0 0 1 * *' (monthly).",
    )
    timezone = models.CharField(max_length=64, validators=[validators.validate_timezone],
                                help_text="IANA timezone name, e.g. Europe/Stockholm or Etc/UTC.")
    active_from = models.DateTimeField(blank=True, help_text="Empty means from now.")
    active_to = models.DateTimeField(null=True, blank=True, help_text="Empty means indefinitely.")
    api_name = models.CharField(
        "API name", max_length=100, blank=True, validators=[validators.validate_api_name],
        help_text="Slug the compatible APIs use (meterApiName); defaults to one made from the name.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    dimensions = models.JSONField(default=list, blank=True, validators=[validators.validate_dimensions])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="%(app_label)s_%(class)s_unique_name"),
            models.UniqueConstraint(
                fields=["account", "external_ref"], name="%(app_label)s_%(class)s_unique_external_ref"
            ),
            models.UniqueConstraint(fields=["account", "api_name"], name="%(app_label)s_%(class)s_unique_api_name"),
            models.CheckConstraint(
                condition=Q(capacity__isnull=True) | Q(capacity__gte=0),
                name="%(app_label)s_%(class)s_capacity_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(aggregation__in=["SUM", "INCREMENT", "MAX", "MIN"]),
                name="%(app_label)s_%(class)s_aggregation_known",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["ACTIVE", "ARCHIVED"]), name="%(app_label)s_%(class)s_status_known"
            ),
            models.CheckConstraint(
                condition=Q(active_to__isnull=True) | Q(active_to__gt=models.F("active_from")),
                name="%(app_label)s_%(class)s_active_window",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def empty_value(self) -> Decimal | None:
        """A meter's value at the start of a period: 0 for SUM and INCREMENT, empty for MAX and MIN."""
        if self.aggregation in (self.Aggregation.MAX, self.Aggregation.MIN):
            return None
        return Decimal(0)


class Meter(models.Model):
    """One customer's counter for one meter type: the current period's state.

    ``value``, ``groups``, ``group_breakdowns``, ``carry_first``, ``carry_last``,
    ``record_count`` and ``last_ingested_at`` are updated by the usage ledger in set-based SQL;
    they are plain columns on purpose. ``value`` is empty for MAX and MIN until the first record.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="meters")
    meter_type = models.ForeignKey(MeterType, on_delete=models.PROTECT, related_name="meters")
    meter_key = models.CharField(max_length=36, help_text="The Meter processor that counts this meter's usage.")
    user_id = models.CharField("user id", max_length=320, help_text="The customer: e-mail, user name, MSISDN…")
    custom_fields = models.JSONField(default=dict, blank=True, validators=[validators.validate_json_object])
    capacity = models.DecimalField(**AMOUNT_DIGITS, null=True, blank=True, validators=[MinValueValidator(0)],
                                   help_text="Copied from the meter type at creation.")
    thresholds = models.JSONField(default=list, blank=True, validators=[validators.validate_thresholds],
                                  help_text="Copied from the meter type at creation.")
    delete_on_reset = models.BooleanField(default=False, help_text="Delete the meter after its next flush.")
    value = models.DecimalField(**AMOUNT_DIGITS, null=True, blank=True)
    groups = models.JSONField(default=list, blank=True)
    group_breakdowns = models.JSONField(default=list, blank=True)
    carry_first = models.JSONField(default=dict, blank=True)
    carry_last = models.JSONField(default=dict, blank=True)
    record_count = models.BigIntegerField(default=0)
    last_ingested_at = models.DateTimeField(null=True, blank=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(default=utc_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter_type", "meter_key", "user_id"], name="%(app_label)s_%(class)s_unique_type_key_user"
            ),
            models.CheckConstraint(
                condition=Q(capacity__isnull=True) | Q(capacity__gte=0),
                name="%(app_label)s_%(class)s_capacity_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="%(app_label)s_%(class)s_period_order"
            ),
            models.CheckConstraint(condition=Q(record_count__gte=0), name="%(app_label)s_%(class)s_record_count"),
        ]
        indexes = [
            # The reset sweep claims meters whose period has ended.
            models.Index(fields=["period_end"], name="metering_meter_period_end"),
            models.Index(fields=["account", "user_id"], name="metering_meter_account_user"),
            models.Index(fields=["account", "meter_key", "user_id"], name="metering_meter_key_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} · {self.meter_key}"


class MeteredRecord(models.Model):
    """A meter's state at the end of one period, written once when the period is flushed.

    The row keeps copies of everything it reports, so it survives its meter (``meter`` becomes
    empty, ``source_meter_id`` keeps the id) and its meter type.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="metered_records")
    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.SET_NULL, related_name="records")
    source_meter_id = models.UUIDField(help_text="The meter's id, kept after the meter is deleted.")
    user_id = models.CharField("user id", max_length=320)
    meter_type_id = models.UUIDField()
    meter_type_name = models.CharField(max_length=80)
    timezone = models.CharField(max_length=64)
    meter_key = models.CharField(max_length=36)
    value = models.DecimalField(**AMOUNT_DIGITS, null=True, blank=True)
    unit = models.CharField(max_length=50)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    groups = models.JSONField(default=list, blank=True)
    carry_first = models.JSONField(default=dict, blank=True)
    carry_last = models.JSONField(default=dict, blank=True)
    custom_fields = models.JSONField(default=dict, blank=True)
    meter_metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=utc_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["period_start"]
        constraints = [
            # Exactly once: one record per meter and period.
            models.UniqueConstraint(fields=["meter", "period_start"], name="%(app_label)s_%(class)s_unique_meter_period"),
        ]
        indexes = [
            models.Index(fields=["account", "source_meter_id", "period_start"], name="metering_record_source_meter"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} · {self.meter_key} · {self.period_start:%Y-%m-%d %H:%M}"

"""Meter types (what is metered), meters (who is metered) and metered records (flushed periods)."""

from __future__ import annotations

import uuid
from datetime import UTC
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now as utc_now

from accounts.models import Account
from metering import aggregation as aggregation_rules
from metering import validators


def in_utc(instant) -> str:
    """An instant in an object's name, with its zone stated as on every admin page (config/formats)."""
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if instant else "–"


def in_zone(instant, zone_name: str) -> str:
    """An instant in a meter type's time zone, named: ``2026-12-06 00:00 CET``."""
    try:
        return f"{instant.astimezone(ZoneInfo(zone_name)):%Y-%m-%d %H:%M %Z}"
    except (ValueError, ZoneInfoNotFoundError):
        return in_utc(instant)


# Usage values and capacities: exact decimals, wide enough for any counter.
AMOUNT_DIGITS = {"max_digits": 38, "decimal_places": 12}


class MeterType(models.Model):
    """What is metered and how: unit, aggregation, capacity, thresholds, reset schedule, timezone.

    Meters copy capacity, thresholds, unit and timezone at creation (seed 003; an edit does not
    change existing meters, seed 000); they follow the type's name, aggregation, reset schedule
    and active window. A schedule change applies from each meter's next period (its current
    ``period_end`` is already fixed).
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
        "reset schedule (cron)",
        max_length=100,
        validators=[validators.validate_cron],
        help_text="5-field crontab in the type's timezone, e.g. '0 0 1 * *' (monthly).",
    )
    timezone = models.CharField(
        max_length=64,
        validators=[validators.validate_timezone],
        help_text="IANA timezone name, e.g. Europe/Stockholm or Etc/UTC.",
    )
    active_from = models.DateTimeField(blank=True, help_text="Empty means from now.")
    active_to = models.DateTimeField(null=True, blank=True, help_text="Empty means indefinitely.")
    api_name = models.CharField(
        "API name",
        max_length=100,
        blank=True,
        validators=[validators.validate_api_name],
        help_text="Slug the compatible APIs use (meterApiName); defaults to one made from the name.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    dimensions = models.JSONField(default=list, blank=True, validators=[validators.validate_dimensions])
    # Usage ledger (metering/ledger/): the compatible APIs' view of the type.
    auto_create_meters = models.BooleanField(
        default=False,
        help_text="Create a customer's meter on its first usage (types made through /meter-definition).",
    )
    counts_unique_customers = models.BooleanField(
        default=False,
        help_text="Amberflo UNIQUE_CUSTOMERS_COUNT: usage queries count distinct customers.",
    )
    # DELETE /meter-definition of a type with meters: the type is archived (its meters, ledger and
    # flushed records stay) and its apiName released; the Amberflo API no longer sees it.
    definition_deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When its meter definition was deleted through /meter-definition (archived, apiName released).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A name is unique among the types the Usage Engine names (seed 000); a type made through
            # /meter-definition carries Amberflo's displayName there, a label that may repeat.
            models.UniqueConstraint(
                fields=["account", "name"],
                condition=Q(auto_create_meters=False),
                name="%(app_label)s_%(class)s_unique_name",
            ),
            models.UniqueConstraint(
                fields=["account", "external_ref"], name="%(app_label)s_%(class)s_unique_external_ref"
            ),
            models.UniqueConstraint(
                fields=["account", "api_name"], name="%(app_label)s_%(class)s_unique_api_name"
            ),
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
        return aggregation_rules.empty_value(self.aggregation)


class Meter(models.Model):
    """One customer's counter for one meter type: the current period's state.

    ``value``, ``groups``, ``group_breakdowns``, ``carry_first``, ``carry_last``,
    ``record_count`` and ``last_ingested_at`` are updated by the usage ledger in set-based SQL;
    they are plain columns on purpose. ``value`` is empty for MAX and MIN until the first record.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="meters")
    meter_type = models.ForeignKey(MeterType, on_delete=models.PROTECT, related_name="meters")
    meter_key = models.CharField(
        max_length=36, help_text="The Meter processor that counts this meter's usage."
    )
    user_id = models.CharField(
        "user id", max_length=320, help_text="The customer: e-mail, user name, MSISDN…"
    )
    custom_fields = models.JSONField(default=dict, blank=True, validators=[validators.validate_json_object])
    capacity = models.DecimalField(
        **AMOUNT_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Copied from the meter type at creation.",
    )
    thresholds = models.JSONField(
        default=list,
        blank=True,
        validators=[validators.validate_thresholds],
        help_text="Copied from the meter type at creation.",
    )
    # Seed 003: a meter inherits its type's unit and timezone when it is created; a later edit of
    # the type does not change existing meters (seed 000). The reset schedule is followed live.
    unit = models.CharField(max_length=50, help_text="Copied from the meter type at creation.")
    timezone = models.CharField(
        max_length=64,
        help_text="Copied from the meter type at creation: the meter's period boundaries use it.",
    )
    delete_on_reset = models.BooleanField(default=False, help_text="Delete the meter after its next flush.")
    value = models.DecimalField(**AMOUNT_DIGITS, null=True, blank=True)
    groups = models.JSONField(default=list, blank=True)
    group_breakdowns = models.JSONField(default=list, blank=True)
    carry_first = models.JSONField(default=dict, blank=True)
    carry_last = models.JSONField(default=dict, blank=True)
    record_count = models.BigIntegerField(default=0)
    last_ingested_at = models.DateTimeField(null=True, blank=True)
    # Timestamps of the records carry_first / carry_last came from (the ledger keeps the earliest
    # and latest by record time); older than period_start means "from an earlier period".
    carry_first_at = models.DateTimeField(null=True, blank=True, editable=False)
    carry_last_at = models.DateTimeField(null=True, blank=True, editable=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(default=utc_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter_type", "meter_key", "user_id"],
                name="%(app_label)s_%(class)s_unique_type_key_user",
            ),
            models.CheckConstraint(
                condition=Q(capacity__isnull=True) | Q(capacity__gte=0),
                name="%(app_label)s_%(class)s_capacity_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")),
                name="%(app_label)s_%(class)s_period_order",
            ),
            models.CheckConstraint(
                condition=Q(record_count__gte=0), name="%(app_label)s_%(class)s_record_count"
            ),
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
    # Empty for the flush at the period's end; for a flush at the end of a stream execution (a
    # Meter processor with ``flush: streamExecution``) the execution that flushed it.
    execution_ref = models.CharField(max_length=255, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=utc_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["period_start", "created_at"]
        constraints = [
            # Exactly once: one record per meter and period (execution_ref empty), and one per
            # meter, period and stream execution.
            models.UniqueConstraint(
                fields=["meter", "period_start", "execution_ref"],
                name="%(app_label)s_%(class)s_unique_meter_period",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account", "source_meter_id", "period_start"], name="metering_record_source_meter"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} · {self.meter_key} · {in_zone(self.period_start, self.timezone)}"


# =============================================================================================
# Usage ledger, data correction, thresholds, filtering rules and billing catalogue (issue 4).
#
# The ledger tables are written only by ``metering.ledger.usage_apply`` in set-based SQL. They
# carry no database foreign keys on purpose: every insert would pay a key check (and take a
# KEY SHARE lock on the account row), the ledger outlives the meters it counted into, and the
# ledger table is range-partitioned by month on PostgreSQL (metering/partitions.py).
# =============================================================================================


class UsageSource(models.TextChoices):
    """How a usage record came in."""

    INGEST_API = "ingest", "Amberflo-compatible /ingest"
    REPORT_API = "report", "Billing report usage"
    STREAM = "stream", "Stream meter processor"
    API = "api", "Service call"


class UsageDedupKey(models.Model):
    """One idempotency key per account and usage record, counted or sent to data correction: the
    exactly-once guard (a key answers with its first outcome).

    Its own table (not a unique index on the ledger) because a partitioned ledger's unique keys
    must include the partition column. ``request_hash`` tells a replay from a reused key.
    Keys older than the idempotency window are purged (``usage_dedup_keys_purge``).
    """

    pk = models.CompositePrimaryKey("account_id", "key")
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    # The key's first record went to data correction: replays are duplicates, and reprocessing the
    # correction (which counts it under this key) releases it first (``correction_keys_release``).
    held_by_correction = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        verbose_name = "usage idempotency key"

    def __str__(self) -> str:
        return self.key


class UsageRecord(models.Model):
    """The usage ledger: every accepted usage record, append-only.

    ``meter_id`` is the meter the record was counted by (kept after the meter is deleted); a
    record whose time is outside that meter's open period is in the ledger and in usage queries
    but did not change the meter.
    """

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    meter_type_id = models.UUIDField()
    meter_id = models.UUIDField()
    user_id = models.CharField("user id", max_length=320)
    value = models.DecimalField(**AMOUNT_DIGITS)
    timestamp = models.DateTimeField()
    dimensions = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20, choices=UsageSource.choices)
    source_ref = models.CharField(max_length=100, blank=True, default="")
    idempotency_key = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        verbose_name = "usage record"
        indexes = [
            # One customer's usage of one meter over time (usage queries, meter recomputation).
            models.Index(
                fields=["account", "meter_type_id", "user_id", "timestamp"],
                name="metering_usage_customer_time",
            ),
        ]
        # PostgreSQL: a BRIN index on timestamp too (migration 0003), and the table is range-
        # partitioned by month on timestamp with primary key (id, timestamp) in the database
        # (migration 0004, metering/partitions.py); Django keeps ``id`` as the key, which the
        # identity sequence keeps unique.

    def __str__(self) -> str:
        return f"{self.user_id} · {self.value.normalize():f} @ {in_utc(self.timestamp)}"


class UsageRollup(models.Model):
    """Hourly sums of the ledger per customer and meter type, maintained with every batch.

    Usage queries read these, so a month of one customer's usage is at most 744 rows.
    """

    pk = models.CompositePrimaryKey("account_id", "meter_type_id", "user_id", "hour")
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    meter_type_id = models.UUIDField()
    user_id = models.CharField("user id", max_length=320)
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    sum = models.DecimalField(**AMOUNT_DIGITS)
    count = models.BigIntegerField()
    max = models.DecimalField(**AMOUNT_DIGITS)
    min = models.DecimalField(**AMOUNT_DIGITS)

    class Meta:
        verbose_name = "hourly usage rollup"
        indexes = [
            # Every customer of one meter type over time (all-customers queries).
            models.Index(fields=["account", "meter_type_id", "hour"], name="metering_rollup_type_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} · {in_utc(self.hour)}"


class DataCorrection(models.Model):
    """A usage record that could not be counted, kept with the reason until it is fixed.

    ``record`` is the record as it came in (editable); reprocessing sends it through the ledger
    again with the same idempotency key, so a record is never counted twice however often it is
    reprocessed. One OPEN correction per idempotency key: a replay of a refused record updates it.
    """

    class Reason(models.TextChoices):
        MISSING_USER_ID = "MISSING_USER_ID", "No userId"
        INVALID_USER_ID = "INVALID_USER_ID", "userId too long"
        MISSING_VALUE = "MISSING_VALUE", "No value"
        NON_NUMERIC_VALUE = "NON_NUMERIC_VALUE", "Value is not a finite number"
        VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE", "Value too large"
        INVALID_TIMESTAMP = "INVALID_TIMESTAMP", "Timestamp not readable"
        FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP", "Timestamp in the future"
        TIMESTAMP_TOO_OLD = "TIMESTAMP_TOO_OLD", "Timestamp older than the idempotency window"
        OUTSIDE_ACTIVE_WINDOW = "OUTSIDE_ACTIVE_WINDOW", "Outside the meter type's active window"
        NO_MATCHING_METER = "NO_MATCHING_METER", "No matching meter (or meter type)"
        AMBIGUOUS_METER = "AMBIGUOUS_METER", "Several meters match"
        ARCHIVED_METER_TYPE = "ARCHIVED_METER_TYPE", "Meter type archived"
        INVALID_DIMENSIONS = "INVALID_DIMENSIONS", "Dimensions are not an object"
        INVALID_RECORD = "INVALID_RECORD", "Record is not an object"

    class Status(models.TextChoices):
        OPEN = "OPEN", "Open"
        REPROCESSED = "REPROCESSED", "Reprocessed"
        DISCARDED = "DISCARDED", "Discarded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="data_corrections")
    source = models.CharField(max_length=20, choices=UsageSource.choices)
    source_ref = models.CharField(max_length=100, blank=True, default="")
    node = models.CharField(max_length=100, blank=True, default="", help_text="Stream node that refused it.")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    message = models.CharField(max_length=500, blank=True, default="")
    record = models.JSONField(help_text="The record as it came in; edit it, then reprocess.")
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    attempts = models.PositiveIntegerField(default=1, help_text="Times the record was refused.")
    created_at = models.DateTimeField(default=utc_now, editable=False)
    updated_at = models.DateTimeField(default=utc_now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(status="OPEN"),
                name="%(app_label)s_%(class)s_one_open_per_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["OPEN", "REPROCESSED", "DISCARDED"]),
                name="%(app_label)s_%(class)s_status_known",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account", "status", "reason", "created_at"], name="metering_correction_list"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reason} · {in_utc(self.created_at)}"


class ThresholdEvent(models.Model):
    """A meter crossed one of its thresholds upward: once per threshold and period."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="threshold_events")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="threshold_events")
    threshold_index = models.PositiveSmallIntegerField(
        help_text="Position in the meter's thresholds, from 0."
    )
    name = models.CharField(max_length=80, blank=True, default="")
    threshold_value = models.DecimalField(**AMOUNT_DIGITS, help_text="The limit crossed (absolute).")
    value = models.DecimalField(**AMOUNT_DIGITS, help_text="The meter's value after the crossing update.")
    period_start = models.DateTimeField()
    crossed_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["-crossed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "threshold_index", "period_start"],
                name="%(app_label)s_%(class)s_once_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or f'threshold {self.threshold_index + 1}'} · {in_utc(self.crossed_at)}"


class MeterEventFilteringRule(models.Model):
    """Amberflo filtering rule: keep (INCLUDE) or drop (EXCLUDE) /ingest events by a dimension's value.

    INCLUDE keeps only events whose dimension holds one of the values (an event without the
    dimension is dropped); EXCLUDE drops events whose dimension holds one of them. Every rule of a
    meter type must let an event through.
    """

    class Action(models.TextChoices):
        INCLUDE = "INCLUDE", "Include"
        EXCLUDE = "EXCLUDE", "Exclude"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="filtering_rules")
    meter_type = models.ForeignKey(MeterType, on_delete=models.CASCADE, related_name="filtering_rules")
    dimension_name = models.CharField(max_length=100)
    dimension_values = models.JSONField(default=list, validators=[validators.validate_dimensions])
    action = models.CharField(max_length=10, choices=Action.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter_type", "dimension_name"], name="%(app_label)s_%(class)s_one_per_dimension"
            ),
            models.CheckConstraint(
                condition=Q(action__in=["INCLUDE", "EXCLUDE"]), name="%(app_label)s_%(class)s_action"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.dimension_name} in {', '.join(self.dimension_values)}"

    def lets_through(self, dimensions: dict) -> bool:
        held = dimensions.get(self.dimension_name)
        matches = held is not None and str(held) in self.dimension_values
        return matches if self.action == self.Action.INCLUDE else not matches

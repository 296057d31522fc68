"""Every write to meter types and meters.

Each service validates before it saves: the field rules declared on the model (``full_clean``),
then the rules that span fields or rows (``meter_type_check`` / ``meter_check``), which the admin
forms call too. Uniqueness is checked up front for a precise 409 and kept by the database's
constraints; a race the database refuses becomes the same 409.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models, transaction
from django.utils.text import slugify
from django.utils.timezone import now as utc_now

from config.api.errors import ValidationFailed
from metering import periods
from metering.exceptions import (
    AggregationImmutable,
    FilteringRuleNotFound,
    MeterExists,
    MeterTypeApiNameExists,
    MeterTypeExternalRefExists,
    MeterTypeInUse,
    MeterTypeNameExists,
    MeterTypeNotFound,
)
from metering.models import Meter, MeterEventFilteringRule, MeterType
from metering.validators import thresholds_use_capacity

# activeFrom / activeTo "cannot be in the past": a client sending its own "now" is late by the
# request's transit time and its clock's skew, so a minute of slack is allowed.
PAST_TOLERANCE = timedelta(seconds=60)

METER_TYPE_UPDATABLE = frozenset(
    {
        "name",
        "description",
        "external_ref",
        "category",
        "unit",
        "aggregation",
        "capacity",
        "thresholds",
        "reset_cron",
        "timezone",
        "active_from",
        "active_to",
        "api_name",
        "status",
        "dimensions",
    }
)
METER_UPDATABLE = frozenset({"capacity", "custom_fields", "delete_on_reset", "thresholds"})

# Model field -> the field's name in the API's error details, where camelCase is not enough.
_API_FIELD_NAMES = {
    "aggregation": "aggregation.type",
    "reset_cron": "resetSchedule.cron",
    "meter_type": "meterTypeId",
}


def api_field_name(model_field: str) -> str:
    if model_field in _API_FIELD_NAMES:
        return _API_FIELD_NAMES[model_field]
    head, *rest = model_field.split("_")
    return head + "".join(part.capitalize() for part in rest)


def model_field_name(api_field: str) -> str | None:
    """The inverse of ``api_field_name`` (for the admin forms); ``None`` for non-field errors."""
    if not api_field:
        return None
    for model_field, name in _API_FIELD_NAMES.items():
        if name == api_field:
            return model_field
    return re.sub(r"(?<!^)(?=[A-Z])", "_", api_field).lower()


def _field_rules(instance: models.Model, *, exclude: Iterable[str]) -> None:
    """The model's own field rules (lengths, patterns, choices, validators) as a 400."""
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except DjangoValidationError as error:
        details = [
            {"field": api_field_name(field) if field != "__all__" else "", "message": str(message)}
            for field, messages in error.message_dict.items()
            for message in messages
        ]
        raise ValidationFailed(details[0]["message"] if len(details) == 1 else None, details=details)


def _save(instance: models.Model, recheck: Callable[[], None], **save_kwargs: Any) -> None:
    """Save; a concurrent duplicate the database refuses becomes the 409 ``recheck`` raises."""
    try:
        with transaction.atomic():
            instance.save(**save_kwargs)
    except IntegrityError:
        recheck()
        raise


# --- Meter types ------------------------------------------------------------------------------


def _check_meter_type_unique(meter_type: MeterType) -> None:
    others = MeterType.objects.filter(account_id=meter_type.account_id).exclude(pk=meter_type.pk)
    # A type made through /meter-definition carries Amberflo's displayName, a label that may repeat;
    # a name the Usage Engine gives is unique among every type of the account (seed 000).
    if not meter_type.auto_create_meters and others.filter(name=meter_type.name).exists():
        raise MeterTypeNameExists(details=[{"field": "name", "message": f"'{meter_type.name}' is taken."}])
    if meter_type.external_ref is not None and others.filter(external_ref=meter_type.external_ref).exists():
        raise MeterTypeExternalRefExists(
            details=[{"field": "externalRef", "message": f"'{meter_type.external_ref}' is taken."}]
        )
    if meter_type.api_name and others.filter(api_name=meter_type.api_name).exists():
        raise MeterTypeApiNameExists(
            details=[{"field": "apiName", "message": f"'{meter_type.api_name}' is taken."}]
        )


def _to_millisecond(value: datetime) -> datetime:
    """The API's precision: what it answers is what a client sends back."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _check_not_in_past(
    instance: models.Model, previous: models.Model | None, field: str, now: datetime
) -> None:
    value = getattr(instance, field)
    before = getattr(previous, field) if previous is not None else None
    # A value sent back as read is unchanged, whatever the clock says (read-modify-write).
    unchanged = before is not None and value is not None and _to_millisecond(before) == _to_millisecond(value)
    # An operator may move an existing type's activeFrom back (to count a backfill, and to reprocess
    # the corrections refused as outside its window); only a new type's start, or a moved end, must not
    # lie in the past.
    moved_back = field == "active_from" and before is not None and value is not None and value < before
    if value is not None and not unchanged and not moved_back and value < now - PAST_TOLERANCE:
        raise ValidationFailed.for_field(
            api_field_name(field), f"{api_field_name(field)} cannot be in the past."
        )


def _check_thresholds_have_capacity(instance: MeterType | Meter) -> None:
    if instance.capacity is None and thresholds_use_capacity(instance.thresholds):
        raise ValidationFailed.for_field("thresholds", "capacityPercentage thresholds need a capacity.")


def meter_type_check(
    *, meter_type: MeterType, previous: MeterType | None = None, now: datetime | None = None
) -> None:
    """Every rule a meter type must meet before it is saved; ``previous`` is its stored state.

    Raises ``ValidationFailed`` (400), ``AggregationImmutable`` (400) or a 409 for a taken name,
    externalRef or apiName. An empty ``active_from`` or ``api_name`` is allowed: the create and
    update services fill them in.
    """
    now = now or utc_now()
    _field_rules(meter_type, exclude=["account"])
    if previous is not None and meter_type.aggregation != previous.aggregation:
        raise AggregationImmutable(
            details=[{"field": "aggregation.type", "message": AggregationImmutable.message}]
        )
    _check_not_in_past(meter_type, previous, "active_from", now)
    _check_not_in_past(meter_type, previous, "active_to", now)
    active_from = meter_type.active_from or now
    if meter_type.active_to is not None and meter_type.active_to <= active_from:
        raise ValidationFailed.for_field("activeTo", "activeTo must be after activeFrom.")
    _check_thresholds_have_capacity(meter_type)
    _check_meter_type_unique(meter_type)


def _free_api_name(account_id: uuid.UUID, name: str, meter_type_pk: uuid.UUID) -> str:
    """A slug of the name that no other meter type of the account uses (``-2``, ``-3``… if taken)."""
    base = slugify(name)[:90].strip("-_.") or "meter-type"
    taken = set(
        MeterType.objects.filter(account_id=account_id, api_name__startswith=base)
        .exclude(pk=meter_type_pk)
        .values_list("api_name", flat=True)
    )
    suffix = 1
    candidate = base
    while candidate in taken:  # bounded: at most len(taken) + 1 candidates
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate


def _normalise_meter_type(meter_type: MeterType, now: datetime) -> None:
    if isinstance(meter_type.reset_cron, str):
        meter_type.reset_cron = " ".join(meter_type.reset_cron.split())
    if meter_type.external_ref == "":
        meter_type.external_ref = None  # "no reference", not a reference that must be unique
    if meter_type.category is None:
        meter_type.category = MeterType.DEFAULT_CATEGORY
    if meter_type.active_from is None:
        meter_type.active_from = _to_millisecond(now)
    meter_type.thresholds = meter_type.thresholds or []
    meter_type.dimensions = meter_type.dimensions or []


@transaction.atomic
def meter_type_create(
    *,
    account_id: uuid.UUID,
    name: str,
    unit: str,
    aggregation: str,
    reset_cron: str,
    timezone: str,
    description: str = "",
    external_ref: str | None = None,
    category: str | None = None,
    capacity: Decimal | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    active_from: datetime | None = None,
    active_to: datetime | None = None,
    api_name: str = "",
    status: str = MeterType.Status.ACTIVE,
    dimensions: list[str] | None = None,
    auto_create_meters: bool = False,
    counts_unique_customers: bool = False,
) -> MeterType:
    """Create a meter type. ``active_from`` defaults to now, ``category`` to DEFAULT, ``api_name`` to a slug."""
    now = utc_now()
    meter_type = MeterType(
        account_id=account_id,
        name=name,
        unit=unit,
        aggregation=aggregation,
        reset_cron=reset_cron,
        timezone=timezone,
        description=description or "",
        external_ref=external_ref,
        category=MeterType.DEFAULT_CATEGORY if category is None else category,
        capacity=capacity,
        thresholds=thresholds,
        active_from=now if active_from is None else active_from,
        active_to=active_to,
        api_name=api_name or "",
        status=status,
        dimensions=dimensions,
        auto_create_meters=auto_create_meters,
        counts_unique_customers=counts_unique_customers,
    )
    _normalise_meter_type(meter_type, now)
    meter_type_check(meter_type=meter_type, now=now)
    if not meter_type.api_name:
        meter_type.api_name = _free_api_name(account_id, meter_type.name, meter_type.pk)
    _save(meter_type, lambda: _check_meter_type_unique(meter_type), force_insert=True)
    return meter_type


@transaction.atomic
def meter_type_update(*, meter_type: MeterType, data: dict[str, Any]) -> MeterType:
    """Change the given fields (model field names). The aggregation cannot change.

    Existing meters keep their capacity, thresholds, unit and timezone (copied at their creation,
    seed 003) and their current period: a new reset schedule applies from each meter's next period.
    """
    unknown = set(data) - METER_TYPE_UPDATABLE
    if unknown:
        raise TypeError(f"Not updatable: {', '.join(sorted(unknown))}")
    locked = MeterType.objects.select_for_update().get(pk=meter_type.pk)
    previous = copy.copy(locked)
    now = utc_now()
    for field, value in data.items():
        setattr(locked, field, value)
    _normalise_meter_type(locked, now)
    meter_type_check(meter_type=locked, previous=previous, now=now)
    if not locked.api_name:
        locked.api_name = _free_api_name(locked.account_id, locked.name, locked.pk)
    if locked.status == MeterType.Status.ACTIVE:
        # A deleted definition's type reactivated is a definition again, under its released name.
        locked.definition_deleted_at = None
    _save(locked, lambda: _check_meter_type_unique(locked))
    return locked


@transaction.atomic
def meter_type_delete(*, meter_type: MeterType) -> int:
    """Delete a meter type that has no meters (409 ``METER_TYPE_IN_USE`` otherwise). Returns 1, or 0 if gone."""
    locked = MeterType.objects.select_for_update().filter(pk=meter_type.pk).first()
    if locked is None:
        return 0
    # Meter creation locks the type too, so no meter can appear between this check and the delete.
    meter_count = locked.meters.count()
    if meter_count:
        raise MeterTypeInUse(
            f"The meter type has {meter_count} meter(s); delete them first.",
            details=[{"field": "id", "message": f"{meter_count} meter(s) use this meter type."}],
        )
    _, deleted = MeterType.objects.filter(pk=locked.pk).delete()
    return deleted.get(MeterType._meta.label, 0)


@transaction.atomic
def meter_type_retire(*, meter_type: MeterType) -> int:
    """Delete a meter type; one that meters use is archived instead and its apiName released.

    What the ledger and the flushed history need stays: the type (archived, so the ledger refuses
    its usage) and its meters, each deleted after its next flush (``delete_on_reset``). Its apiName
    becomes ``<apiName>-deleted-<id>`` so that a new type may take the name; its filtering rules
    go. Returns 1, or 0 if the type is gone.
    """
    locked = MeterType.objects.select_for_update().filter(pk=meter_type.pk).first()
    if locked is None:
        return 0
    if not locked.meters.exists():
        return meter_type_delete(meter_type=locked)
    now = utc_now()
    locked.status = MeterType.Status.ARCHIVED
    locked.definition_deleted_at = now
    locked.api_name = _free_api_name(
        locked.account_id, f"{locked.api_name[:50]}-deleted-{locked.pk.hex}", locked.pk
    )
    _save(locked, lambda: _check_meter_type_unique(locked))
    Meter.objects.filter(meter_type=locked).update(delete_on_reset=True, updated_at=now)
    MeterEventFilteringRule.objects.filter(meter_type=locked).delete()
    return 1


# --- Meters -----------------------------------------------------------------------------------


def _meter_type_for_new_meter(
    account_id: uuid.UUID, meter_type_id: Any, external_ref: str | None
) -> MeterType:
    if (meter_type_id is None) == (external_ref is None):
        message = (
            "Give either meterTypeId or externalRef."
            if meter_type_id is None
            else ("Give meterTypeId or externalRef, not both.")
        )
        raise ValidationFailed(
            message,
            details=[
                {"field": "meterTypeId", "message": message},
                {"field": "externalRef", "message": message},
            ],
        )
    # Locked so that a concurrent delete of the type waits for this meter (and then refuses).
    types = MeterType.objects.select_for_update().filter(account_id=account_id)
    if external_ref is not None:
        found = types.filter(external_ref=external_ref).first()
        field = "externalRef"
    else:
        try:
            found = types.filter(pk=uuid.UUID(str(meter_type_id))).first()
        except ValueError:
            found = None
        field = "meterTypeId"
    if found is None:
        raise MeterTypeNotFound(
            details=[{"field": field, "message": "No meter type with this id in the account."}]
        )
    return found


def _check_meter_unique(meter: Meter) -> None:
    duplicate = Meter.objects.filter(
        meter_type_id=meter.meter_type_id, meter_key=meter.meter_key, user_id=meter.user_id
    ).exclude(pk=meter.pk)
    if duplicate.exists():
        raise MeterExists(details=[{"field": "meterKey", "message": MeterExists.message}])


def meter_check(*, meter: Meter, is_new: bool) -> None:
    """Every rule a meter must meet before it is saved (400, or 409 ``METER_EXISTS`` for a new duplicate)."""
    # The type is checked when it is looked up; the period is computed here, never given; unit and
    # timezone are copied from the type (validated there) when the meter is created.
    _field_rules(meter, exclude=["account", "meter_type", "period_start", "period_end", "unit", "timezone"])
    _check_thresholds_have_capacity(meter)
    if is_new:
        _check_meter_unique(meter)


@transaction.atomic
def meter_create(
    *,
    account_id: uuid.UUID,
    meter_key: str,
    user_id: str,
    meter_type_id: uuid.UUID | str | None = None,
    external_ref: str | None = None,
    custom_fields: dict[str, Any] | None = None,
) -> Meter:
    """Create a meter for the type given by id or by its externalRef.

    The meter copies the type's capacity and thresholds; its first period starts now, or at the
    type's activeFrom if that is later (seed 003: no period before the type is active), and ends at
    the type's next reset after that start in the type's timezone.
    """
    meter_type = _meter_type_for_new_meter(account_id, meter_type_id, external_ref)
    now = utc_now()
    start = max(now, meter_type.active_from) if meter_type.active_from is not None else now
    meter = Meter(
        account_id=account_id,
        meter_type=meter_type,
        meter_key=meter_key,
        user_id=user_id,
        custom_fields=custom_fields if custom_fields is not None else {},
        capacity=meter_type.capacity,
        thresholds=copy.deepcopy(meter_type.thresholds),
        value=meter_type.empty_value(),
        period_start=start,
        period_end=periods.next_period_end(meter_type.reset_cron, meter_type.timezone, start),
        unit=meter_type.unit,
        timezone=meter_type.timezone,
        created_at=now,
    )
    meter_check(meter=meter, is_new=True)
    _save(meter, lambda: _check_meter_unique(meter), force_insert=True)
    return meter


@transaction.atomic
def meter_update(*, meter: Meter, data: dict[str, Any]) -> Meter:
    """Change capacity, customFields, deleteOnReset or thresholds.

    Only those columns are written, so usage the ledger adds meanwhile is never overwritten.
    """
    unknown = set(data) - METER_UPDATABLE
    if unknown:
        raise TypeError(f"Not updatable: {', '.join(sorted(unknown))}")
    locked = Meter.objects.select_for_update().select_related("meter_type").get(pk=meter.pk)
    for field, value in data.items():
        setattr(locked, field, value)
    if locked.custom_fields is None:
        locked.custom_fields = {}
    if locked.thresholds is None:
        locked.thresholds = []
    meter_check(meter=locked, is_new=False)
    if data:
        locked.save(update_fields=[*data, "updated_at"])
    return locked


@transaction.atomic
def meter_delete(*, meter: Meter) -> int:
    """Delete a meter. Its flushed records stay (their ``meter`` becomes empty). Returns 1, or 0 if gone."""
    _, deleted = Meter.objects.filter(pk=meter.pk).delete()
    return deleted.get(Meter._meta.label, 0)


# --- filtering rules (the Amberflo-compatible API and the admin) ------------------------------


@transaction.atomic
def filtering_rule_save(
    *,
    account_id: uuid.UUID,
    meter_type: MeterType,
    dimension_name: str,
    dimension_values: list[str],
    action: str,
    rule_id: str | None = None,
) -> MeterEventFilteringRule:
    """Create or update a filtering rule of ``meter_type`` (applied to /ingest events). With
    ``rule_id`` that rule is updated; without, the meter type's rule on the same dimension is (one
    rule per meter type and dimension), or a new one is made."""
    if action not in MeterEventFilteringRule.Action.values:
        raise ValidationFailed.for_field("action", "action must be INCLUDE or EXCLUDE.")
    rules = MeterEventFilteringRule.objects.select_for_update().filter(account_id=account_id)
    if rule_id:
        try:
            chosen = uuid.UUID(str(rule_id))
        except ValueError:
            raise ValidationFailed.for_field("ruleId", "ruleId must be a UUID.")
        rule = rules.filter(pk=chosen).first()
        if rule is None:
            # A client-chosen id is created under that id (as the real service does); an id that
            # another account's rule holds is unusable and answers like any unknown rule.
            if MeterEventFilteringRule.objects.filter(pk=chosen).exists():
                raise FilteringRuleNotFound(
                    details=[{"field": "ruleId", "message": FilteringRuleNotFound.message}]
                )
            rule = MeterEventFilteringRule(pk=chosen, account_id=account_id)
        clash = rules.filter(meter_type=meter_type, dimension_name=dimension_name).exclude(pk=rule.pk).first()
        if clash is not None:
            raise ValidationFailed.for_field(
                "dimensionName", f"Rule {clash.pk} already filters this dimension."
            )
    else:
        rule = rules.filter(
            meter_type=meter_type, dimension_name=dimension_name
        ).first() or MeterEventFilteringRule(account_id=account_id)
    rule.meter_type = meter_type
    rule.dimension_name = dimension_name
    rule.dimension_values = list(dimension_values)
    rule.action = action
    rule.full_clean(exclude=["account", "meter_type"], validate_unique=False, validate_constraints=False)
    rule.save()
    return rule


@transaction.atomic
def filtering_rule_delete(*, rule: MeterEventFilteringRule) -> None:
    rule.delete()

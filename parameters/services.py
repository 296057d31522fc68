"""Every write to global parameters, and the one place a sensitive value is decrypted.

Sensitive values are encrypted here, before they reach the database, and decrypted only by
``parameter_resolve`` (for the stream engine, inside a run). Nothing in this module logs a value.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from accounts.models import Account
from config.api.errors import ValidationFailed
from parameters import crypto
from parameters.exceptions import (
    ParameterAlreadyExists,
    ParameterDecryptionFailed,
    ParameterLimitReached,
    ParameterNotFound,
    ParameterTypeImmutable,
)
from parameters.models import (
    DESCRIPTION_MAX_LENGTH,
    MAX_PARAMETERS_PER_ACCOUNT,
    NAME_MAX_LENGTH,
    NAME_MAX_LEVELS,
    NAME_PATTERN,
    VALUE_MAX_LENGTH,
    Parameter,
)

logger = logging.getLogger(__name__)

TYPES = (Parameter.Type.STANDARD.value, Parameter.Type.SENSITIVE.value)
DELETE_MAX_NAMES = MAX_PARAMETERS_PER_ACCOUNT
ROTATE_BATCH_SIZE = 500


# --- validation (shared by the API, the admin form and the services themselves) ---------------


def name_errors(name: object) -> list[str]:
    if not isinstance(name, str):
        return ["name must be a string."]
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        return [f"name must be 1 to {NAME_MAX_LENGTH} characters long."]
    if not NAME_PATTERN.fullmatch(name):
        return [
            "name may contain only letters, digits, underscores (_), hyphens (-), periods (.) and "
            "forward slashes (/) between non-empty levels (pattern ^[\\w.-]+(?:/[\\w.-]+)*$)."
        ]
    if name.count("/") + 1 > NAME_MAX_LEVELS:
        return [f"name may have at most {NAME_MAX_LEVELS} levels (separated by /)."]
    return []


def type_errors(type: object) -> list[str]:
    if type not in TYPES:
        return ['type must be "standard" or "sensitive" (case-sensitive).']
    return []


def value_errors(value: object) -> list[str]:
    # The messages never echo the value: it may be a secret.
    if not isinstance(value, str):
        return ["value must be a string."]
    if not 1 <= len(value) <= VALUE_MAX_LENGTH:
        return [f"value must be 1 to {VALUE_MAX_LENGTH} characters long."]
    if "\x00" in value:
        return ["value may not contain null characters."]
    return []


def description_errors(description: object) -> list[str]:
    if not isinstance(description, str):
        return ["description must be a string."]
    if len(description) > DESCRIPTION_MAX_LENGTH:
        return [f"description may be at most {DESCRIPTION_MAX_LENGTH} characters long."]
    if "\x00" in description:
        return ["description may not contain null characters."]
    return []


def _raise_if_invalid(checks: dict[str, list[str]]) -> None:
    details = [
        {"field": field_name, "message": message}
        for field_name, messages in checks.items()
        for message in messages
    ]
    if details:
        message = details[0]["message"] if len(details) == 1 else "The request is not valid."
        raise ValidationFailed(message, details=details)


def parameter_validate_new(
    *, account: Account | uuid.UUID, name: str, type: str, value: str, description: str = ""
) -> None:
    """Every rule of a create, without writing (the admin form uses it to show errors in place)."""
    _raise_if_invalid(
        {
            "name": name_errors(name),
            "type": type_errors(type),
            "value": value_errors(value),
            "description": description_errors(description),
        }
    )
    existing = Parameter.objects.filter(account_id=_account_id(account))
    if existing.filter(name=name).exists():
        raise ParameterAlreadyExists(f"A parameter named {name!r} already exists in the account.")
    if existing.count() >= MAX_PARAMETERS_PER_ACCOUNT:
        raise ParameterLimitReached(
            f"The account already holds {MAX_PARAMETERS_PER_ACCOUNT} parameters, the maximum; delete one first."
        )


def parameter_validate_update(*, description: str | None = None, value: str | None = None) -> None:
    """The field rules of an update (``None`` = not changed)."""
    _raise_if_invalid(
        {
            "description": description_errors(description) if description is not None else [],
            "value": value_errors(value) if value is not None else [],
        }
    )


def _account_id(account: Account | uuid.UUID) -> uuid.UUID:
    return account.pk if isinstance(account, Account) else account


def _lock_account(account: Account | uuid.UUID) -> None:
    """Serialise parameter creation per account so the 100-parameter limit holds under concurrency.

    FOR NO KEY UPDATE: it does not block inserts elsewhere that reference the account (they take
    FOR KEY SHARE). SQLite ignores it; its IMMEDIATE transactions already serialise writers.
    """
    account_id = _account_id(account)
    Account.objects.select_for_update(no_key=True).filter(pk=account_id).values_list("pk", flat=True).first()


def _store_value(parameter: Parameter, value: str) -> None:
    if parameter.is_sensitive:
        parameter.encrypted_value = crypto.encrypt(value)
        parameter.value = ""
    else:
        parameter.value = value
        parameter.encrypted_value = ""


# --- writes ------------------------------------------------------------------------------------


@transaction.atomic
def parameter_create(
    *, account: Account | uuid.UUID, name: str, type: str, value: str, description: str = ""
) -> Parameter:
    """Create a parameter. A sensitive value is encrypted before it is saved; its plaintext never is.

    409 ``PARAMETER_ALREADY_EXISTS`` for a taken name, 409 ``PARAMETER_LIMIT_REACHED`` past 100.
    """
    _lock_account(account)
    parameter_validate_new(account=account, name=name, type=type, value=value, description=description)
    parameter = Parameter(account_id=_account_id(account), name=name, type=type, description=description)
    _store_value(parameter, value)
    try:
        with transaction.atomic():
            parameter.save(force_insert=True)
    except IntegrityError:
        # The unique constraint caught a concurrent create of the same name.
        raise ParameterAlreadyExists(f"A parameter named {name!r} already exists in the account.")
    return parameter


@transaction.atomic
def parameter_update(
    *, parameter: Parameter, description: str | None = None, value: str | None = None, type: str | None = None
) -> Parameter:
    """Change the description, the value, or both. The type cannot change (400 PARAMETER_TYPE_IMMUTABLE);
    sending the current type is accepted and changes nothing."""
    current = Parameter.objects.select_for_update().filter(pk=parameter.pk).first()
    if current is None:
        raise ParameterNotFound(f"Parameter {parameter.name!r} not found.")
    if type is not None and type != current.type:
        raise ParameterTypeImmutable(
            f"The parameter type cannot be updated (it is {current.type!r}); delete and create it again instead.",
            details=[{"field": "type", "message": "The parameter type cannot be updated."}],
        )
    if description is None and value is None:
        raise ValidationFailed(
            "At least one field (description or value) must be provided.",
            details=[{"field": "", "message": "Provide description, value or both."}],
        )
    parameter_validate_update(description=description, value=value)
    if description is not None:
        current.description = description
    if value is not None:
        _store_value(current, value)
    current.save()
    return current


@dataclass(frozen=True)
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "deletedCount": len(self.deleted),
            "deletedParameters": self.deleted,
            "invalidParameters": self.invalid,
        }


@transaction.atomic
def parameters_delete(*, account: Account | uuid.UUID, names: list[str]) -> DeleteResult:
    """Delete the named parameters of the account. Names that do not exist in it (including
    malformed ones and other accounts' names) are answered as invalid, not as an error."""
    if not isinstance(names, list) or not names:
        raise ValidationFailed.for_field("parameters", "parameters must be a non-empty array of names.")
    if len(names) > DELETE_MAX_NAMES:
        raise ValidationFailed.for_field("parameters", f"At most {DELETE_MAX_NAMES} names per request.")
    if any(not isinstance(name, str) for name in names):
        raise ValidationFailed.for_field("parameters", "Every parameter name must be a string.")
    if len(set(names)) != len(names):
        raise ValidationFailed.for_field("parameters", "Parameter names must be unique.")
    account_id = _account_id(account)
    found = dict(
        Parameter.objects.select_for_update()
        .filter(account_id=account_id, name__in=names)
        .values_list("name", "pk")
    )
    Parameter.objects.filter(pk__in=found.values()).delete()
    return DeleteResult(
        deleted=[name for name in names if name in found],
        invalid=[name for name in names if name not in found],
    )


def parameter_delete(*, parameter: Parameter) -> None:
    """Delete one parameter (the admin's delete)."""
    parameters_delete(account=parameter.account_id, names=[parameter.name])


@dataclass
class RotationProgress:
    rotated: int
    total: int


def parameter_keys_rotate(
    *,
    batch_size: int = ROTATE_BATCH_SIZE,
    parameter_ids: list[uuid.UUID] | None = None,
    on_progress: Callable[[RotationProgress], None] | None = None,
) -> int:
    """Re-encrypt every sensitive value (or those of ``parameter_ids``) under the newest key.

    Batches of ``batch_size`` rows, each in its own transaction with the rows locked, walked in
    primary-key order (keyset pagination, so no row is skipped or visited twice). A value no
    configured key opens stops the rotation with ``ParameterDecryptionFailed`` naming it; batches
    done before it stay rotated, and running again is safe. ``updated_at`` is not touched: the
    value did not change. Returns the number of values re-encrypted.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    sensitive = Parameter.objects.filter(type=Parameter.Type.SENSITIVE)
    if parameter_ids is not None:
        sensitive = sensitive.filter(pk__in=parameter_ids)
    total = sensitive.count()
    rotated = 0
    last_pk = None
    # Bounded: each pass moves past at least one row, and rows are finite.
    while True:
        with transaction.atomic():
            batch_query = sensitive.order_by("pk").select_for_update()
            if last_pk is not None:
                batch_query = batch_query.filter(pk__gt=last_pk)
            batch = list(batch_query.only("pk", "account_id", "name", "encrypted_value")[:batch_size])
            if not batch:
                break
            for parameter in batch:
                try:
                    parameter.encrypted_value = crypto.rotate(parameter.encrypted_value)
                except ParameterDecryptionFailed as exc:
                    raise ParameterDecryptionFailed(
                        f"Parameter {parameter.name!r} of account {parameter.account_id} cannot be decrypted "
                        f"with any configured key; {rotated} value(s) were rotated before it. {exc.message}"
                    )
            Parameter.objects.bulk_update(batch, ["encrypted_value"])
            rotated += len(batch)
            last_pk = batch[-1].pk
        if on_progress is not None:
            on_progress(RotationProgress(rotated=rotated, total=total))
    return rotated


# --- the stream engine's read ------------------------------------------------------------------


def parameter_resolve(*, account: Account | uuid.UUID, name: str) -> str:
    """The plaintext value of a parameter, for the stream engine only.

    This is the only place in the code base where a sensitive value is decrypted. Call it inside a
    stream run, use the value there, and never log, store or return it. Raises
    ``ParameterNotFound`` (404) for a name the account does not hold and
    ``ParameterDecryptionFailed`` (500) when no configured key opens the stored value: the
    ciphertext is never handed out in its place.
    """
    account_id = _account_id(account)
    parameter = (
        Parameter.objects.filter(account_id=account_id, name=name)
        .only("name", "type", "value", "encrypted_value")
        .first()
    )
    if parameter is None:
        raise ParameterNotFound(f"Parameter {name!r} not found.")
    if not parameter.is_sensitive:
        return parameter.value
    try:
        return crypto.decrypt(parameter.encrypted_value)
    except ParameterDecryptionFailed as exc:
        logger.error(
            "sensitive parameter %r of account %s cannot be decrypted with the configured keys",
            name,
            account_id,
        )
        raise ParameterDecryptionFailed(f"Parameter {name!r}: {exc.message}")

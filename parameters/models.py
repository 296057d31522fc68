"""Global parameters: named values that stream node configurations reference."""

from __future__ import annotations

import re
import uuid

from django.db import models

from accounts.models import Account

NAME_MAX_LENGTH = 900
NAME_MAX_LEVELS = 10
# ASCII only: the seed's \w means letters, digits and underscore (a-z, A-Z, 0-9, _), as in Usage Engine.
NAME_PATTERN = re.compile(r"[\w.-]+(?:/[\w.-]+)*", re.ASCII)
VALUE_MAX_LENGTH = 8192
DESCRIPTION_MAX_LENGTH = 1024
MAX_PARAMETERS_PER_ACCOUNT = 100
# What the admin shows in place of a sensitive value. Fixed, so it reveals nothing (not even the length).
MASK = "********"


class Parameter(models.Model):
    """A global parameter of one account, addressed by its name (``group/subgroup/name``).

    A standard parameter keeps its value in ``value``. A sensitive one keeps only a Fernet token in
    ``encrypted_value``: the plaintext is never stored (a check constraint holds it to that), never
    returned by the API, never shown in the admin, and decrypted in one place only,
    ``parameters.services.parameter_resolve``, which the stream engine calls inside a run.
    """

    class Type(models.TextChoices):
        STANDARD = "standard", "standard"
        SENSITIVE = "sensitive", "sensitive"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="parameters")
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    type = models.CharField(
        max_length=16, choices=Type.choices, help_text="Cannot be changed after creation."
    )
    value = models.TextField(blank=True, default="", help_text="The plaintext value of a standard parameter.")
    encrypted_value = models.TextField(
        blank=True, default="", help_text="The Fernet token of a sensitive parameter's value."
    )
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="%(app_label)s_%(class)s_unique_name"),
            models.CheckConstraint(
                condition=models.Q(type__in=["standard", "sensitive"]),
                name="%(app_label)s_%(class)s_type_valid",
            ),
            # A sensitive parameter never holds plaintext; a standard one never holds a token.
            models.CheckConstraint(
                condition=(
                    (models.Q(type="standard", encrypted_value="") & ~models.Q(value=""))
                    | (models.Q(type="sensitive", value="") & ~models.Q(encrypted_value=""))
                ),
                name="%(app_label)s_%(class)s_value_matches_type",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never the value: reprs end up in logs, tracebacks and debug pages.
        return f"<Parameter {self.name!r} ({self.type})>"

    @property
    def is_sensitive(self) -> bool:
        return self.type == self.Type.SENSITIVE

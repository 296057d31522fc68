"""Tenants and the credentials that act for them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from oauth2_provider.models import Application


class Account(models.Model):
    """A tenant. Every row of every app belongs to exactly one account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    has_billing_license = models.BooleanField(
        default=True, help_text="Licence flag for the billing-compatible subscription lookups."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AccountUser(models.Model):
    """Links an admin user to the account whose objects they see and edit."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_link"
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="users")

    def __str__(self) -> str:
        return f"{self.user} @ {self.account}"


class ApplicationAccess(models.Model):
    """An OAuth 2.0 client (client credentials) acting for one account with a fixed set of scopes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="application_accesses")
    name = models.CharField(max_length=100)
    application = models.OneToOneField(
        Application, on_delete=models.CASCADE, related_name="application_access"
    )
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "application access"
        verbose_name_plural = "application accesses"
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def client_id(self) -> str:
        return self.application.client_id


class ApiKey(models.Model):
    """An account API key for ``X-API-KEY`` (Amberflo-compatible endpoints). Stored as SHA-256."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters of the key, to recognise it.")
    key_checksum = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

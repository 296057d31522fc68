"""The admin sign-in form, throttled by user name and client address (``accounts.throttle``)."""

from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm

from accounts import throttle


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """After ``LOGIN_FAILURE_LIMIT`` failures for a user name from one address (or
    ``LOGIN_ADDRESS_FAILURE_LIMIT`` from one address for any names), every sign-in from there is
    refused, the right password included, until ``LOGIN_LOCKOUT_SECONDS`` after the first."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins. Try again in %(minutes)s minute(s).",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = throttle.client_address(self.request)
        wait = throttle.login_blocked_for(username, address)
        if wait:
            raise forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"minutes": math.ceil(wait / 60)}
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            throttle.login_failed(username, address)
            raise
        throttle.login_succeeded(username, address)
        return cleaned

"""Used by ``make run``: a demo account, admin user and Application Access, with fresh credentials.

The admin password and the client secret are stored hashed, so they cannot be shown again; each
run sets new ones for the demo objects (only those) and prints them.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services
from accounts.models import ApplicationAccess

DEMO_ACCOUNT = "demo"
DEMO_ADMIN = "admin"
DEMO_APP = "demo-client"


class Command(BaseCommand):
    help = "Create (or refresh the credentials of) the demo account, admin user and Application Access."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    @transaction.atomic
    def handle(self, *args, **options):
        base = options["base_url"].rstrip("/")
        account = services.account_get_or_create(name=DEMO_ACCOUNT)
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(
            username=DEMO_ADMIN, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        services.account_user_link(user=user, account=account)
        access = ApplicationAccess.objects.filter(account=account, name=DEMO_APP).first()
        if access is None:
            access, secret = services.application_access_create(
                account=account, name=DEMO_APP, scopes=["all"]
            )
        else:
            secret = services.application_access_rotate_secret(access=access)
        self.stdout.write(
            f"""
  Admin:   {base}/admin/   user: {DEMO_ADMIN}   password: {password}
  Docs:    {base}/docs/
  Account: {account.name} ({account.pk})
  Get a token (the demo client secret is new on every start):

    curl -s -X POST {base}/oauth/token -H 'Content-Type: application/json' \\
      -d '{{"client_id": "{access.client_id}", "client_secret": "{secret}", "grant_type": "client_credentials", "audience": "{base}/"}}'
"""
        )

import json

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from config.api.errors import ApiError


class Command(BaseCommand):
    help = "Create an Application Access (OAuth client) for an account; prints the client secret once."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="Account name (created if missing).")
        parser.add_argument("--name", required=True, help="Application Access name.")
        parser.add_argument("--scopes", nargs="+", default=["all"], help="'all' or a list of scopes.")
        parser.add_argument("--json", action="store_true", help="Print JSON only.")

    def handle(self, *args, **options):
        account = services.account_get_or_create(name=options["account"])
        try:
            access, secret = services.application_access_create(
                account=account, name=options["name"], scopes=options["scopes"]
            )
        except ApiError as exc:
            raise CommandError(exc.message)
        payload = {
            "accountId": str(account.pk),
            "clientId": access.client_id,
            "clientSecret": secret,
            "scopes": access.scopes,
        }
        if options["json"]:
            self.stdout.write(json.dumps(payload))
        else:
            self.stdout.write(json.dumps(payload, indent=2))
            self.stdout.write("The client secret is shown only now; it is stored hashed.")

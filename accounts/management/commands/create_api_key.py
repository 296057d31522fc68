import json

from django.core.management.base import BaseCommand

from accounts import services


class Command(BaseCommand):
    help = "Create an account API key (X-API-KEY); prints the key once."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", nargs="+", default=["all"])

    def handle(self, *args, **options):
        account = services.account_get_or_create(name=options["account"])
        key, raw = services.api_key_create(account=account, name=options["name"], scopes=options["scopes"])
        self.stdout.write(json.dumps({"accountId": str(account.pk), "apiKeyId": str(key.pk), "apiKey": raw}))

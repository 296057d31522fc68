import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from config.api.errors import ApiError
from streams import services


class Command(BaseCommand):
    help = "Create a solution (the solutionId that POST /streams/import takes); prints its id."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, help="The account's name.")
        parser.add_argument("--name", required=True, help="The solution's name (unique in the account).")

    def handle(self, *args, **options):
        account = Account.objects.filter(name=options["account"]).first()
        if account is None:
            raise CommandError(f"No account named {options['account']!r}.")
        try:
            solution = services.solution_create(account=account, name=options["name"])
        except ApiError as exc:
            raise CommandError(exc.message)
        self.stdout.write(
            json.dumps({"accountId": str(account.pk), "solutionId": str(solution.pk), "name": solution.name})
        )

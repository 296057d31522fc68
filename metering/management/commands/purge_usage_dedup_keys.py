from django.core.management.base import BaseCommand

from metering.ledger import usage_dedup_keys_purge


class Command(BaseCommand):
    help = "Delete usage idempotency keys older than IDEMPOTENCY_WINDOW_DAYS (safe to run any time)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args, **options):
        deleted = usage_dedup_keys_purge(batch_size=options["batch_size"])
        self.stdout.write(f"{deleted} idempotency key(s) deleted.")

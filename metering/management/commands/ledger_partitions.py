from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from metering import partitions


def _month(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"{text!r} is not a month (YYYY-MM).")


class Command(BaseCommand):
    help = (
        "PostgreSQL: create the usage ledger's monthly partitions ahead (moving rows out of DEFAULT) and "
        "detach (or drop) the months older than the retention, as the daily beat task does. Safe to run "
        "at any time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--months-ahead",
            type=int,
            default=None,
            help="Partitions this many months after the current one (default: "
            "LEDGER_PARTITION_MONTHS_AHEAD).",
        )
        parser.add_argument(
            "--since",
            type=_month,
            default=None,
            metavar="YYYY-MM",
            help="Also create the partitions from this month on (e.g. before loading old data).",
        )
        parser.add_argument(
            "--retention-months",
            type=int,
            default=None,
            help="Detach the months older than this many before the current one (default: "
            "LEDGER_RETENTION_MONTHS; unset keeps everything).",
        )
        parser.add_argument(
            "--drop",
            action="store_true",
            help="Drop the partitions past the retention instead of keeping them detached.",
        )

    def handle(self, *args, **options):
        if not partitions.ledger_is_partitioned():
            self.stdout.write(
                "The ledger is not partitioned (not PostgreSQL, or not migrated): nothing to do."
            )
            return
        progress = self.stdout.write
        retention = options["retention_months"]
        if retention is None:
            retention = settings.LEDGER_RETENTION_MONTHS
        if retention is not None and retention < 1:
            raise CommandError("--retention-months must be at least 1.")
        created = partitions.ledger_partitions_ensure(
            months_ahead=options["months_ahead"], since=options["since"], progress=progress
        )
        self.stdout.write(
            f"{len(created.created)} partition(s) created, {created.moved_rows} row(s) moved out of DEFAULT."
        )
        if retention is None:
            self.stdout.write("No retention (LEDGER_RETENTION_MONTHS unset): every month is kept.")
            expired = partitions.PartitionsReport()
        else:
            expired = partitions.ledger_partitions_expire(
                retention_months=retention, drop=options["drop"] or None, progress=progress
            )
            verb = "dropped" if expired.dropped else "detached"
            self.stdout.write(
                f"{len(expired.detached)} partition(s) {verb} (retention {retention} month(s))."
            )
        attached = partitions.ledger_partitions()
        months = [month for month in attached.values() if month is not None]
        self.stdout.write(
            f"Attached: {len(months)} monthly partition(s)"
            + (f", {min(months):%Y-%m} to {max(months):%Y-%m}" if months else "")
            + ", and DEFAULT."
        )
        if created.skipped or expired.skipped:
            for name, why in created.skipped + expired.skipped:
                self.stderr.write(f"skipped {name}: {why}")

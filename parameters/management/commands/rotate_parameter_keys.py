"""Re-encrypt every sensitive parameter value with the newest key of PARAMETER_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError

from parameters import services
from parameters.exceptions import ParameterEncryptionError


class Command(BaseCommand):
    help = (
        "Re-encrypt every sensitive parameter value with the newest key (the first of "
        "PARAMETER_ENCRYPTION_KEYS), in batches. Rotate keys by putting the new key first, running "
        "this command, then removing the old key. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=services.ROTATE_BATCH_SIZE,
            help=f"Rows per transaction (default {services.ROTATE_BATCH_SIZE}).",
        )

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")

        def report(progress: services.RotationProgress) -> None:
            self.stdout.write(f"rotated {progress.rotated}/{progress.total} sensitive parameter values")

        try:
            rotated = services.parameter_keys_rotate(batch_size=batch_size, on_progress=report)
        except ParameterEncryptionError as exc:
            raise CommandError(f"{exc.code}: {exc.message}")
        self.stdout.write(
            self.style.SUCCESS(
                f"done: {rotated} sensitive parameter value(s) re-encrypted with the newest key"
            )
        )

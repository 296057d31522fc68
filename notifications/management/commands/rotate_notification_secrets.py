"""Re-encrypt every webhook endpoint secret under the current SECRET_KEY.

Rotation: set the new SECRET_KEY, keep the old one in SECRET_KEY_FALLBACKS, run this command,
then remove the fallback. Safe to run twice.
"""

from django.core.management.base import BaseCommand

from notifications.services import notification_endpoint_secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt webhook endpoint secrets under the current SECRET_KEY (after a key rotation)."

    def handle(self, *args, **options):
        count = notification_endpoint_secrets_reencrypt()
        self.stdout.write(f"Re-encrypted {count} endpoint secret(s).")

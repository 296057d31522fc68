from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator's dashboard (the admin index) and cross-app operator pages.

    It reads every other app; no app imports it.
    """

    name = "console"

    def ready(self) -> None:
        # The built-in dashboard panels register themselves when their module is imported.
        from console import dashboard  # noqa: F401

from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"

    def ready(self) -> None:
        # Hooks into collection (batch stored) and metering (correction reprocessing).
        from streams import gauges
        from streams.engine import wiring

        wiring.connect()
        gauges.register()

"""``python -m stockpipe.analytics``: wiring only (settings, clients, loop)."""

from __future__ import annotations

from stockpipe.analytics.app import AnalyticsApp
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import run_main
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load


def main() -> int:
    settings = load(AnalyticsSettings)
    settings.indicator_config(), settings.alert_config()  # contradictory values stop start-up here
    with Runtime(settings) as rt:
        rt.health.add_check("kafka", kafka_check(settings))
        # Retry forever: an output is never dropped by a timeout while Kafka is away.
        app = AnalyticsApp(settings, Publisher(settings, **{"message.timeout.ms": 0}), rt.health, rt.shutdown)
        rt.health.add_check("state", app.check_ready)
        try:
            app.run()
        finally:
            app.close()
    return 0


if __name__ == "__main__":
    run_main(main)

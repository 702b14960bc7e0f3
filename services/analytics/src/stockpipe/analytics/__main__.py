"""``python -m stockpipe.analytics``: wiring only (settings, clients, loop)."""

from __future__ import annotations

from stockpipe.analytics.app import AnalyticsHandler
from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.consume import ConsumeLoop
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import run_main
from stockpipe.common.progress import Progress
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load


def main() -> int:
    settings = load(AnalyticsSettings)
    settings.indicator_config(), settings.alert_config()  # contradictory values stop start-up here
    with Runtime(settings) as rt:
        rt.health.add_check("kafka", kafka_check(settings))
        # Retry forever: an output is never dropped by a timeout while Kafka is away.
        publisher = Publisher(settings, **{"message.timeout.ms": 0})
        progress = Progress("processed", settings.progress_interval)
        handler = AnalyticsHandler(settings, publisher, rt.health, rt.shutdown, progress)
        loop = ConsumeLoop(settings, settings.analytics_group_id, [handler.raw], handler,
                           publisher=publisher, health=rt.health, shutdown=rt.shutdown,
                           batch_size=settings.analytics_batch_size, batch_timeout=settings.analytics_batch_timeout,
                           progress=progress, max_inflight=1)
        try:
            loop.run()
        finally:
            loop.close()
            publisher.close(timeout=max(0.5, min(5.0, rt.shutdown.remaining())))
    return 0


if __name__ == "__main__":
    run_main(main)

"""``python -m stockpipe.forecaster``: wiring only (settings, clients, pool, loop)."""

from __future__ import annotations

import logging

from stockpipe.common.consume import ConsumeLoop
from stockpipe.common.db import Database
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import run_main
from stockpipe.common.progress import Progress
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load
from stockpipe.forecaster.app import ForecasterHandler
from stockpipe.forecaster.dispatch import Dispatcher
from stockpipe.forecaster.pool import FitPool, cpu_budget
from stockpipe.forecaster.registry import Registry
from stockpipe.forecaster.settings import ForecasterSettings

logger = logging.getLogger("stockpipe.forecaster")


def main() -> int:
    settings = load(ForecasterSettings).check()  # contradictory values stop start-up here
    with Runtime(settings) as rt:
        db = Database(settings)
        rt.health.add_check("kafka", kafka_check(settings))
        rt.health.add_check("postgres", db.check)
        workers = settings.forecaster_workers or cpu_budget()
        pool = FitPool(workers)
        logger.info("fitting in %d worker processes", workers)
        # Retry forever: a forecast is never dropped by a timeout while Kafka is away.
        publisher = Publisher(settings, **{"message.timeout.ms": 0})
        dispatcher = Dispatcher(settings, pool, Registry(db), publisher.publish, rt.shutdown.event)
        progress = Progress("processed", settings.progress_interval)
        handler = ForecasterHandler(settings, dispatcher, rt.health, rt.shutdown, progress)
        loop = ConsumeLoop(settings, settings.forecaster_group_id, [handler.topic], handler,
                           publisher=publisher, health=rt.health, shutdown=rt.shutdown,
                           batch_size=settings.forecaster_batch_size,
                           batch_timeout=settings.forecaster_batch_timeout, progress=progress,
                           max_inflight=settings.forecaster_max_inflight,
                           stall_timeout=settings.forecaster_stall_timeout)
        try:
            loop.run()
        finally:
            loop.close()  # the handler's close abandons fits in flight
            publisher.close(timeout=max(0.5, min(5.0, rt.shutdown.remaining())))
            db.close()
    return 0


if __name__ == "__main__":
    run_main(main)

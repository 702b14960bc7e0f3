"""``python -m stockpipe.notifier``: wiring only (settings, clients, loop)."""

from __future__ import annotations

import logging

from stockpipe.common.consume import ConsumeLoop
from stockpipe.common.db import Database
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import retry, run_main
from stockpipe.common.progress import Progress
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load
from stockpipe.notifier.app import NotifierHandler, stall_timeout
from stockpipe.notifier.delivery import Dispatcher
from stockpipe.notifier.settings import NotifierSettings
from stockpipe.notifier.store import DisabledEndpoints, GoneRecorder, prepare

logger = logging.getLogger("stockpipe.notifier")

# Batches in flight at once: a fast endpoint runs this far ahead of one that is retrying.
_MAX_INFLIGHT = 8


def main() -> int:
    settings = load(NotifierSettings)
    endpoints = settings.endpoints()  # a bad NOTIFY_ENDPOINTS stops start-up here (exit 2)
    reenable = settings.reenabled(endpoints)  # a number beyond the endpoints stops start-up here (exit 2)
    policy = settings.retry_policy()
    with Runtime(settings) as rt:
        rt.health.add_check("kafka", kafka_check(settings))
        if not endpoints:
            # Not consuming: the alerts stay in Kafka, and once endpoints are configured the
            # group starts where it left off (ALERT_MAX_AGE skips the ones grown too old).
            logger.warning("NOTIFY_ENDPOINTS is empty: no endpoint to deliver alerts to; idling without consuming")
            while not rt.shutdown.requested:
                rt.health.beat()
                rt.shutdown.wait(1.0)
            return 0
        # Endpoints that answered 410 Gone stay disabled across restarts (store.py): read them
        # before consuming, waiting out a PostgreSQL outage.
        db = Database(settings, max_connections=1)
        rt.health.add_check("postgres", db.check)
        store = DisabledEndpoints(db)
        disabled = retry(lambda: prepare(store, endpoints, reenable), shutdown=rt.shutdown, health=rt.health,
                         what="reading the disabled endpoints from PostgreSQL")
        recorder = GoneRecorder(store)
        for ep in endpoints:
            filters = ", ".join(f"{k} {','.join(sorted(v))}" for k in ("symbols", "rules", "intervals")
                                if (v := getattr(ep, k)) is not None)
            logger.info("endpoint #%d: %s, format %s%s", ep.index, ep.name, ep.format,
                        f" ({filters})" if filters else "")
        # Retry forever: a dead-lettered alert is never dropped by a timeout while Kafka is away.
        publisher = Publisher(settings, **{"message.timeout.ms": 0})
        progress = Progress("consumed", settings.progress_interval)
        dispatcher = Dispatcher(endpoints, policy=policy, dashboard_url=settings.dashboard_url,
                                stopping=rt.shutdown.event, disabled=disabled, on_gone=recorder.record)
        handler = NotifierHandler(settings.topic("alerts"), dispatcher)
        loop = ConsumeLoop(settings, settings.notifier_group_id, [handler.alerts], handler,
                           publisher=publisher, health=rt.health, shutdown=rt.shutdown,
                           batch_size=settings.notifier_batch_size, batch_timeout=settings.notifier_batch_timeout,
                           progress=progress, max_inflight=_MAX_INFLIGHT,
                           stall_timeout=stall_timeout(policy, settings.notifier_batch_size),
                           # Alerts are urgent: a crashed notifier's partitions move after 10 s rather
                           # than librdkafka's 45 s (heartbeats go every 3 s from a background thread).
                           consumer_overrides={"session.timeout.ms": 10_000})
        try:
            loop.run()
        finally:
            loop.close()
            recorder.close(timeout=max(0.5, min(2.0, rt.shutdown.remaining())))
            publisher.close(timeout=max(0.5, min(5.0, rt.shutdown.remaining())))
            db.close()
    return 0


if __name__ == "__main__":
    run_main(main)

"""``python -m stockpipe.ingestor``: wiring only (settings, clients, loop)."""

from __future__ import annotations

import sys

from stockpipe.common.consume import ConsumeLoop
from stockpipe.common.db import Database
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import run_main
from stockpipe.common.progress import Progress
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load
from stockpipe.ingestor.app import IngestHandler
from stockpipe.ingestor.settings import IngestorSettings

# The writer thread takes the GIL back from the decoding thread after each COPY chunk and
# round trip; at CPython's default 5 ms switch interval those waits made a 20,000-row write
# take ~65 ms instead of ~54 (ingest benchmark, 1M bars).
SWITCH_INTERVAL = 0.0005
# Batches in flight (decoded, not yet committed). The main thread and the writer take about
# as long per batch, each unevenly, so a short queue leaves one waiting for the other: with 2,
# draining a 1M backlog left 1.3-1.5 µs of idle CPU per row on 2 cores, with 4 1.0-1.2, and
# ran 10 % faster (mean of 5 paired runs; 4 also beat 3 in 3 pairs, 6 beat 4 in 1 of 3).
# The cost: peak RSS in that drain 345 MB instead of 309 MB.
INFLIGHT_BATCHES = 4


def main() -> int:
    settings = load(IngestorSettings)
    sys.setswitchinterval(SWITCH_INTERVAL)
    with Runtime(settings) as rt:
        db = Database(settings)
        rt.health.add_check("kafka", kafka_check(settings))
        rt.health.add_check("postgres", db.check)
        progress = Progress("stored", settings.progress_interval)
        handler = IngestHandler(settings, db, progress)
        # Retry forever: a dead-lettered copy is never dropped by a timeout while Kafka is away.
        publisher = Publisher(settings, **{"message.timeout.ms": 0})
        loop = ConsumeLoop(settings, settings.ingestor_group_id, list(handler.sinks), handler,
                           publisher=publisher, health=rt.health, shutdown=rt.shutdown,
                           batch_size=settings.ingestor_batch_size, batch_timeout=settings.ingestor_batch_timeout,
                           progress=progress, max_inflight=INFLIGHT_BATCHES)
        try:
            loop.run()
        finally:
            loop.close()
            publisher.close(timeout=max(0.5, min(5.0, rt.shutdown.remaining())))
            db.close()
    return 0


if __name__ == "__main__":
    run_main(main)

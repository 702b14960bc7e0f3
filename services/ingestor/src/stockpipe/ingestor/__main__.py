"""``python -m stockpipe.ingestor``: wiring only (settings, clients, loop)."""

from __future__ import annotations

from stockpipe.common.db import Database
from stockpipe.common.kafka import Publisher, kafka_check
from stockpipe.common.lifecycle import run_main
from stockpipe.common.runtime import Runtime
from stockpipe.common.settings import load
from stockpipe.ingestor.app import Ingestor
from stockpipe.ingestor.settings import IngestorSettings


def main() -> int:
    settings = load(IngestorSettings)
    with Runtime(settings) as rt:
        db = Database(settings)
        rt.health.add_check("kafka", kafka_check(settings))
        rt.health.add_check("postgres", db.check)
        ingestor = Ingestor(settings, db, Publisher(settings), rt.health, rt.shutdown)
        try:
            ingestor.run()
        finally:
            ingestor.close()
    return 0


if __name__ == "__main__":
    run_main(main)

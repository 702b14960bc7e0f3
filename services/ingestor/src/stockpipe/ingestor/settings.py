"""Settings of the ingestor."""

from __future__ import annotations

from dataclasses import dataclass

from stockpipe.common.settings import CommonSettings, setting

__all__ = ["IngestorSettings"]


@dataclass(frozen=True, kw_only=True)
class IngestorSettings(CommonSettings):
    service_name: str = setting("ingestor", help="name in logs, client ids and consumer groups")
    ingestor_group_id: str = setting("stockpipe-ingestor", help="Kafka consumer group of the ingestor")
    ingestor_topics: tuple[str, ...] = setting(
        ("raw", "indicators", "alerts", "forecasts"),
        help="topic kinds persisted (raw, indicators, alerts, forecasts)",
        pattern=r"^(raw|indicators|alerts|forecasts)$",
    )
    # 20,000 rows is ~2 MB of COPY text: large enough that per-batch costs (a transaction,
    # a commit round trip) vanish, small enough to keep a batch under a second.
    ingestor_batch_size: int = setting(20_000, ge=1, le=1_000_000, help="max messages per database transaction")
    ingestor_batch_timeout: float = setting(0.5, gt=0, le=60, help="seconds to wait for a batch to fill")

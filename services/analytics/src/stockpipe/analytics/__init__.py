"""Analytics: incremental technical indicators and alerts, ``raw`` → ``indicators`` + ``alerts``.

- :mod:`~stockpipe.analytics.indicators`: the indicator set, TA-Lib's definitions, O(1) per bar
- :mod:`~stockpipe.analytics.alerts`: alert rules firing on crossings, with cooldowns
- :mod:`~stockpipe.analytics.processor`: one series' state (dedup, late bars) → output messages
- :mod:`~stockpipe.analytics.app`: the Kafka loop and the state rebuild on partition assignment
"""

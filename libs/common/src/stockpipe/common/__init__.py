"""stockpipe's shared library: what every service would otherwise copy.

- :mod:`~stockpipe.common.settings`: typed settings from the environment
- :mod:`~stockpipe.common.logs`: logging set-up, secrets masked
- :mod:`~stockpipe.common.messages`: the v1 message models and their JSON codec
- :mod:`~stockpipe.common.kafka`: idempotent publisher, at-least-once batch consumer, DLQ
- :mod:`~stockpipe.common.db`: PostgreSQL pool and idempotent batch upserts
- :mod:`~stockpipe.common.http`: ``/metrics``, ``/healthz``, ``/readyz``
- :mod:`~stockpipe.common.metrics`: the metrics every service shares
- :mod:`~stockpipe.common.lifecycle` / :mod:`~stockpipe.common.runtime`: signals, backoff, start-up
- :mod:`~stockpipe.common.errors`: the exception root and the three kinds of failure
- ``python -m stockpipe.common.topics`` / ``python -m stockpipe.common.migrate``: set-up jobs
"""

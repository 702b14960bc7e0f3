"""Notifier: alerts to webhooks, ``alerts`` → signed JSON (Standard Webhooks) and Slack.

- :mod:`~stockpipe.notifier.endpoints`: ``NOTIFY_ENDPOINTS`` parsed and validated; filters
- :mod:`~stockpipe.notifier.webhooks`: what goes over the wire: signing, JSON and Slack bodies
- :mod:`~stockpipe.notifier.delivery`: one worker per endpoint, retries, the circuit breaker
- :mod:`~stockpipe.notifier.app`: the handler plugged into the shared consume loop
"""

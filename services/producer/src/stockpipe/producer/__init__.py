"""The producer: final OHLCV bars from a source onto the ``raw`` topic (``python -m stockpipe.producer``).

Sources (``PRODUCER_SOURCE``): ``yfinance`` (live bars from Yahoo Finance), ``synthetic``
(seeded geometric Brownian motion with each asset class's sessions; also the load
generator), ``replay`` (a CSV file), and ``auto``: yfinance, or synthetic with a loud warning
when Yahoo is unreachable, under symbols of its own (``AAPL.SYN``) so that simulated bars
never continue a real series.

Read in this order: :mod:`.app` (the delivery contract and the loop), :mod:`.resume` (where
each series left off), :mod:`.sources` (what a source promises), then one source.
"""

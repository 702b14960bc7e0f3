"""The producer: final OHLCV bars from a source onto the ``raw`` topic (``python -m stockpipe.producer``).

Sources (``PRODUCER_SOURCE``): ``yfinance`` (live 1-minute bars from Yahoo Finance),
``synthetic`` (seeded geometric Brownian motion; also the load generator), ``replay`` (a CSV
file), and ``auto``: yfinance, or synthetic with a loud warning when Yahoo is unreachable.
"""

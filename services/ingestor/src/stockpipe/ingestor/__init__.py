"""The ingestor: the one writer of stream data into PostgreSQL (``python -m stockpipe.ingestor``).

Each topic it persists is a :class:`~stockpipe.ingestor.sinks.Sink`: a message codec, a
table and a function from message to rows. Adding a topic is adding a sink.
"""

"""Bar sources. Each has ``name`` and ``bars(resume, stop) -> Iterator[Bar]``."""

"""The README documents every forecaster setting and says plainly what accuracy to expect."""

from __future__ import annotations

from pathlib import Path

from stockpipe.common.settings import describe
from stockpipe.forecaster.settings import ForecasterSettings

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def test_every_forecaster_variable_is_documented() -> None:
    missing = [var for var, _, _ in describe(ForecasterSettings) if f"`{var}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_readme_says_prices_are_close_to_a_random_walk() -> None:
    assert "close to a random walk" in README

"""The README's configuration reference lists every variable each service reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockpipe.analytics.settings import AnalyticsSettings
from stockpipe.common.settings import CommonSettings, describe
from stockpipe.common.topics import TopicSettings
from stockpipe.ingestor.settings import IngestorSettings
from stockpipe.producer.settings import ProducerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("cls", [CommonSettings, TopicSettings, ProducerSettings, IngestorSettings, AnalyticsSettings])
def test_every_variable_is_documented(cls: type) -> None:
    missing = [var for var, _, _ in describe(cls) if f"`{var}`" not in README]
    assert not missing, f"README lacks {missing}: regenerate the configuration tables"


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README

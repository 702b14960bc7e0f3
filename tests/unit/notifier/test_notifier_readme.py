"""The README's Notifier section: every setting documented, and its code does what it says."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from stockpipe.common.messages import Alert
from stockpipe.common.settings import describe
from stockpipe.notifier.endpoints import decode_secret, parse_endpoints
from stockpipe.notifier.settings import NotifierSettings
from stockpipe.notifier.webhooks import json_body, json_headers

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
SECTION = README[README.index("## Notifier"):README.index("## Producer sources")]


def test_every_variable_is_documented() -> None:
    missing = [var for var, _, _ in describe(NotifierSettings) if f"`{var}`" not in README]
    assert not missing, f"README lacks {missing}: regenerate the configuration tables"


def test_the_verification_snippet_accepts_a_signed_request_and_refuses_a_forged_one() -> None:
    code = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the README's own example
    verify = scope["verify"]
    from datetime import UTC, datetime

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    alert = Alert(id="a1", symbol="AAPL", interval="1m", ts=datetime(2024, 1, 2, tzinfo=UTC), rule="price_change",
                  value=0.03, threshold=0.02, message="m")
    body = json_body(alert)
    headers = json_headers(decode_secret(secret), alert.id, int(time.time()), body)
    verify(secret, headers, body)
    with pytest.raises(ValueError, match="bad signature"):
        verify(secret, headers, body.replace(b"0.03", b"0.30"))
    with pytest.raises(ValueError, match="too far"):
        old = json_headers(decode_secret(secret), alert.id, int(time.time()) - 600, body)
        verify(secret, old, body)


def test_the_example_configuration_is_valid() -> None:
    script = re.search(r"```bash\n(SECRET=.*?)make run\n```", SECTION, re.S).group(1)
    out = subprocess.run(["bash", "-c", script + 'printf %s "$NOTIFY_ENDPOINTS"'], capture_output=True, text=True,
                         check=True).stdout
    json_ep, slack_ep = parse_endpoints(out)
    assert json_ep.format == "json" and len(json_ep.key) == 32 and slack_ep.format == "slack"

"""The OpenAPI document checked against the live endpoints by schemathesis (property-based).

For every operation schemathesis generates requests from the document (valid and invalid
parameters) and checks each response of the real gunicorn server: no 5xx, a documented
status code and content type, a body that matches the documented schema. Bounded examples
per operation keep it under a minute here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from test_dashboard_api import served  # noqa: F401 - the filled database and the running dashboard

pytestmark = pytest.mark.integration


# schemathesis' own pytest plugin does not run under this pytest (it reads a private
# attribute pytest 9 removed), so each operation's strategy drives a hypothesis test here.
def _utc(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


EXAMPLES = 40  # per operation: 7 operations in well under a minute


@pytest.fixture(scope="module")
def operations(served):  # noqa: F811
    _, dash = served
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{dash.port}/api/v1/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    return {op.path: op for op in ops}


OPERATIONS = ["/api/v1/series", "/api/v1/symbols", "/api/v1/bars", "/api/v1/indicators", "/api/v1/alerts",
              "/api/v1/forecasts", "/api/v1/models"]


def test_the_document_lists_exactly_these_operations(operations) -> None:
    assert sorted(operations) == sorted(OPERATIONS)


@pytest.mark.parametrize("path", OPERATIONS)
def test_every_endpoint_keeps_its_documented_contract(operations, path: str) -> None:
    calls = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=operations[path].as_strategy())
    def check(case) -> None:
        query = case.query or {}
        if query.get("from") and query.get("to") and _utc(query["from"]) > _utc(query["to"]):
            # An empty range is refused with 422 naming `from`: a rule across two
            # parameters, which the document states in words only.
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            assert response.status_code == 422 and "from" in response.json()["errors"]["query"]
        elif query.get("cursor") is not None:
            # A cursor is opaque: any string fits the schema, but only the server's own are
            # pages. The answer to a forged one is a documented JSON 400 naming the cursor.
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            assert response.status_code in (200, 400, 422), response.text
            if response.status_code == 400:
                assert "cursor" in response.json()["message"]
        else:
            response = case.call_and_validate()
        calls.append(response.status_code)

    check()
    assert calls, "no request was made"

"""Schemathesis fuzzes the OIP v2 routes from the server's own OpenAPI document: whatever it
sends, the server never answers with a 5xx.

The schema is loaded inside the test (the server is a session fixture) and each operation's
strategy is run with hypothesis directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from model_server.harness import RunningServer

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_no_5xx_whatever_the_request(
    digits_server: RunningServer, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{digits_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 13

    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(mode))
        def check(case: schemathesis.Case) -> None:
            response = case.call(timeout=10)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send to a route without inputs
            assert mode is schemathesis.GenerationMode.NEGATIVE

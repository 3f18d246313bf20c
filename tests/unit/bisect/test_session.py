"""session.compare_endpoints: an endpoint whose server errors while the endpoints are compared is one line
(BisectError, exit 1), not a traceback (found with a llama-server of llama-cpp-python 0.3.34, whose
/v1/completions answered HTTP 500 "does not match the expected Content-only format" for the tiny model)."""

from __future__ import annotations

import pytest

from builder.bisect.driver import Endpoints
from builder.bisect.errors import BisectError
from builder.bisect.session import compare_endpoints
from builder.smoke.openai import ServerError

ENDPOINTS = Endpoints(good="sha256:" + "a" * 64, bad="sha256:" + "b" * 64)


class StandInMeasurer:
    """Stands in for bisect.measure.Measurer (which boots containers): only reference() is called."""

    def __init__(self, answer):
        self.answer = answer

    def reference(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_server_error_while_comparing_the_endpoints_is_one_line():
    error = ServerError("POST /v1/completions: HTTP 500: The model produced output that does not match the "
                        "expected Content-only format")
    with pytest.raises(BisectError) as caught:
        compare_endpoints(StandInMeasurer(error), ENDPOINTS)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 1
    assert "endpoints could not be compared (good sha256:aaaaaaaaaaaa" in message and "HTTP 500" in message


def test_a_comparison_that_works_is_returned_as_it_is():
    assert compare_endpoints(StandInMeasurer({"metric": "golden"}), ENDPOINTS) == {"metric": "golden"}

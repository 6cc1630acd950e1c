"""The Lambda context the local gateway hands the app: what Chalice's LocalGateway would build from the same
config (its lookups made once per gateway), a request id of its own per request."""
from __future__ import annotations

import pytest
from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalGateway

from infra.local.gateway import ApiGateway, TokenBucket

ATTRIBUTES = ("function_name", "function_version", "invoked_function_arn", "memory_limit_in_mb", "log_group_name",
              "log_stream_name", "identity", "client_context", "_max_runtime")


@pytest.mark.parametrize("config", [
    Config.create(lambda_timeout=30),
    Config.create(),
    Config.create(function_name="BookingApiFunction", lambda_memory_size=512, lambda_timeout=7),
])
def test_the_context_is_chalices_for_the_same_config(config):
    app = Chalice(app_name="context_test")
    ours = ApiGateway(app, config, None, TokenBucket(10, 10), b"{}")
    chalices = LocalGateway(app, config)
    first, second, expected = (ours._generate_lambda_context(), ours._generate_lambda_context(),
                               chalices._generate_lambda_context())
    for name in ATTRIBUTES:
        assert getattr(first, name) == getattr(expected, name), name
    assert first.aws_request_id != second.aws_request_id
    assert 0 < first.get_remaining_time_in_millis() <= expected._max_runtime

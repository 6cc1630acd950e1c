"""A stand-in for Lambda's context object, for local invocations."""
from __future__ import annotations

import os
import secrets
import time
import uuid


class LocalContext:
    def __init__(self, function_name: str, timeout_s: int = 30, memory_mb: int = 512):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s
        # Lambda's runtime sets a fresh X-Ray trace id per invocation; the JSON logs carry it as trace_id.
        os.environ["_X_AMZN_TRACE_ID"] = (f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
                                         f"Parent={secrets.token_hex(8)};Sampled=0")

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

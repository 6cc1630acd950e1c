"""Run one function of template.yaml with one event, like `sam local invoke`, without Docker.

    python -m infra.local.invoke PaymentFunction -e infra/events/payment_fn/msk.json
    python -m infra.local.invoke BookingApiFunction -e infra/events/booking_api/api_gateway_get_listings.json
    echo '{}' | python -m infra.local.invoke RetryFunction -e -

The function sees the template's environment, replaced by infra/local/env.json (--env-vars, SAM's format),
replaced by variables set in this shell. An Api function (the Chalice app) takes the API Gateway proxy event
and returns the proxy response. The result is printed to stdout as JSON; the function's JSON log lines go to
stderr (as SAM prints the container's logs apart from the result). Exit code 1 when the function raised.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from infra.local import template
from infra.local.lambda_context import LocalContext


def read_event(source: str | None) -> dict:
    """The event from a file, from stdin ('-'), or {} when none is given (as `sam local invoke --no-event`)."""
    if source is None:
        return {}
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return json.loads(text) if text.strip() else {}


def invoke(function: template.Function, event: dict, overrides_path: Path | None = None):
    """Apply the function's local environment, import its handler and call it once with the event."""
    from booking_core import logs

    function.apply_environment(overrides_path)
    logs.setup(function.logical_id, stream=sys.stderr)
    handler = function.load_handler()
    return handler(event, LocalContext(function.logical_id, function.timeout, function.memory_mb))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="the function's logical id in the template")
    parser.add_argument("-e", "--event", help="event JSON file, or - for stdin")
    parser.add_argument("-t", "--template", default=str(template.TEMPLATE))
    parser.add_argument("-n", "--env-vars", help="overrides file in SAM's --env-vars format "
                        "(default infra/local/env.json)")
    args = parser.parse_args(argv)
    functions = template.functions(Path(args.template))
    if args.function not in functions:
        print(f"no function {args.function!r} in {args.template}; functions: {', '.join(functions)}",
              file=sys.stderr)
        return 2
    event = read_event(args.event)
    try:
        result = invoke(functions[args.function], event, Path(args.env_vars) if args.env_vars else None)
    except Exception as exc:  # noqa: BLE001 - reported like Lambda's error result
        print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc),
                          "stackTrace": traceback.format_exc().splitlines()}, indent=2))
        return 1
    print(json.dumps(result, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one function of template.yaml with one event, like `sam local invoke`, without Docker.

    python -m infra.local.invoke PaymentFunction -e infra/events/payment_fn/msk.json
    python -m infra.local.invoke BookingApiFunction -e infra/events/booking_api/api_gateway_get_listings.json
    echo '{}' | python -m infra.local.invoke RetryFunction -e -
    python -m infra.local.invoke PaymentFunction -e infra/events/payment_fn/msk.json --build-dir .aws-sam/build

The function sees the template's environment, replaced by infra/local/env.json (--env-vars, SAM's format),
replaced by variables set in this shell. An Api function (the Chalice app) takes the API Gateway proxy event
and returns the proxy response. The result is printed to stdout as JSON; the function's JSON log lines go to
stderr (as SAM prints the container's logs apart from the result). Exit code 1 when the function raised.

With --build-dir (the output of `sam build`) the function runs from its built folder and the built layer alone,
in a separate interpreter that sees no source tree and no installed package (infra/local/built_runner.py): the
docker-free twin of `sam local invoke` for what is deployed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
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


BUILT_RUNNER = Path(__file__).with_name("built_runner.py")


def invoke_built(function: template.Function, build_dir: Path, event_source: str | None,
                 overrides_path: Path | None = None, modules_out: Path | None = None,
                 **run_kwargs) -> subprocess.CompletedProcess:
    """Run the function from `sam build` output in an isolated interpreter (`-I -S`: only its built folder and
    the built layers are importable), with the same environment as `invoke`. `run_kwargs` go to subprocess.run
    (by default the child's stdout and stderr are this process's). Raises FileNotFoundError when not built."""
    code_dir = build_dir / function.logical_id
    layer_dirs = [build_dir / layer_id / "python" for layer_id in function.layer_ids]
    missing = [str(d) for d in (code_dir, *layer_dirs) if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"not built: {', '.join(missing)} (run `make build`)")
    env = {**os.environ, **function.local_environment(overrides_path)}
    env.pop("PYTHONPATH", None)  # -I ignores it anyway; gone so nobody reads it as in effect
    args = [sys.executable, "-I", "-S", str(BUILT_RUNNER), "--code-dir", str(code_dir),
            *(arg for d in layer_dirs for arg in ("--layer-dir", str(d))), "--handler", function.handler,
            "--function-name", function.logical_id, "--timeout", str(function.timeout),
            "--memory", str(function.memory_mb)]
    if event_source is not None:
        args += ["--event", event_source if event_source == "-" else str(Path(event_source).resolve())]
    if modules_out is not None:
        args += ["--modules-out", str(modules_out)]
    return subprocess.run(args, env=env, **run_kwargs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="the function's logical id in the template")
    parser.add_argument("-e", "--event", help="event JSON file, or - for stdin")
    parser.add_argument("-t", "--template", default=str(template.TEMPLATE))
    parser.add_argument("-n", "--env-vars", help="overrides file in SAM's --env-vars format "
                        "(default infra/local/env.json)")
    parser.add_argument("--build-dir", help="run the function as `sam build` left it in this folder "
                        "(e.g. .aws-sam/build), isolated from the source tree")
    args = parser.parse_args(argv)
    functions = template.functions(Path(args.template))
    if args.function not in functions:
        print(f"no function {args.function!r} in {args.template}; functions: {', '.join(functions)}",
              file=sys.stderr)
        return 2
    overrides = Path(args.env_vars) if args.env_vars else None
    if args.build_dir:
        try:
            return invoke_built(functions[args.function], Path(args.build_dir).resolve(), args.event,
                                overrides).returncode
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
    event = read_event(args.event)
    try:
        result = invoke(functions[args.function], event, overrides)
    except Exception as exc:  # noqa: BLE001 - reported like Lambda's error result
        print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc),
                          "stackTrace": traceback.format_exc().splitlines()}, indent=2))
        return 1
    print(json.dumps(result, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one handler from `sam build` output with nothing else importable, as Lambda's runtime does.

    python -I -S infra/local/built_runner.py --code-dir .aws-sam/build/PaymentFunction \
        --layer-dir .aws-sam/build/BookingCoreLayer/python --handler app.handler --event event.json

Started by `python -m infra.local.invoke ... --build-dir`, never imported: it uses the standard library only,
and `-I -S` keeps the source tree, PYTHONPATH and every installed package off sys.path, so the function folder
and its layers' python/ folders are all it can import (the layer must carry the runtime dependencies). The
result goes to stdout as JSON; anything the function prints or logs goes to stderr. Exit code 1 when the
handler raises. `--modules-out FILE` writes the file of every module loaded, for a test to check where each
came from.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import sys
import traceback
from pathlib import Path


def _context_class():
    # Loaded by path: importing infra.local would put the source tree on sys.path.
    path = Path(__file__).with_name("lambda_context.py")
    spec = importlib.util.spec_from_file_location("_local_lambda_context", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LocalContext


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--layer-dir", action="append", default=[])
    parser.add_argument("--handler", required=True, help="module.attribute, as in the template")
    parser.add_argument("--event", help="event JSON file, or - for stdin; none: {}")
    parser.add_argument("--function-name", default="function")
    parser.add_argument("--timeout", type=int, default=30)
    parser.add_argument("--memory", type=int, default=512)
    parser.add_argument("--modules-out")
    args = parser.parse_args(argv)

    text = "" if args.event is None else sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
    event = json.loads(text) if text.strip() else {}
    context = _context_class()(args.function_name, args.timeout, args.memory)
    # Lambda's order: the function's folder, then the layers (/opt/python).
    sys.path[:0] = [str(Path(args.code_dir).resolve()), *(str(Path(d).resolve()) for d in args.layer_dir)]
    module_name, _, attribute = args.handler.rpartition(".")
    result_out = sys.stdout
    code = 0
    with contextlib.redirect_stdout(sys.stderr):  # stdout is for the result only
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
            result = handler(event, context)
        except Exception as exc:  # noqa: BLE001 - reported like Lambda's error result
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc),
                      "stackTrace": traceback.format_exc().splitlines()}
            code = 1
    if args.modules_out:
        files = sorted({str(getattr(m, "__file__", None)) for m in list(sys.modules.values())
                        if getattr(m, "__file__", None)})
        Path(args.modules_out).write_text(json.dumps(files))
    print(json.dumps(result, default=str, indent=2), file=result_out)
    return code


if __name__ == "__main__":
    sys.exit(main())

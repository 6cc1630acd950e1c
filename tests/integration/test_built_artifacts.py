"""What `sam build` makes is what runs: every function, imported from its built folder and the built layer alone
(an interpreter started with -I -S: no source tree, no PYTHONPATH, no installed package), handles each of its
sample events against this run's stack — the docker-free twin of `sam local invoke` on the deployed code.

The build is `make build` (SAM CLI from its own venv, requirements-sam.txt; `--cached`, so an unchanged source
tree costs about 20 s on a quiet machine instead of a full 45-85 s pip install), once per run (conftest).
"""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from infra.local import template
from infra.local.invoke import invoke_built
from tests.integration.test_invoke import check_invoke_result, local_aws_env, sample_events

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def build_dir(sam_build) -> Path:
    return sam_build


def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return [str(Path(paths[name]).resolve()) for name in ("stdlib", "platstdlib")]


@pytest.mark.parametrize("function, event_path", sample_events(), ids=lambda v: getattr(v, "name", v))
def test_the_built_function_alone_handles_its_sample_event(function, event_path, build_dir, stack, tmp_path,
                                                           monkeypatch):
    event = json.loads(event_path.read_text())
    aws = local_aws_env(stack) if "triggerSource" in event else {}
    for name, value in {"LOG_LEVEL": "INFO", "DECISION_TIMEOUT_S": "5", "REPLICATION_RUN_S": "1", **aws}.items():
        monkeypatch.setenv(name, value)
    fn = template.functions()[function]
    modules_out = tmp_path / "modules.json"

    result = invoke_built(fn, build_dir, str(event_path), modules_out=modules_out, capture_output=True, text=True,
                          timeout=120)

    check_invoke_result(function, json.loads(event_path.read_text()), result)
    # Every module came from the function's built folder, a built layer, or the standard library.
    allowed = [str(build_dir / function), *(str(build_dir / layer) for layer in fn.layer_ids)]
    loaded = [str(Path(f).resolve()) for f in json.loads(modules_out.read_text())
              if not f.startswith(str(Path(__file__).parents[2] / "infra" / "local"))]  # the runner itself
    strays = [f for f in loaded if not any(f.startswith(a) for a in allowed)
              and not (any(f.startswith(s) for s in _stdlib_dirs()) and "site-packages" not in f)]
    assert not strays, strays
    assert any(f.startswith(str(build_dir / fn.layer_ids[0])) and "/booking_core/" in f for f in loaded)
    assert not any(f.startswith(str(ROOT / "layer")) or f.startswith(str(ROOT / fn.code_uri)) for f in loaded)


def test_the_built_layer_carries_every_runtime_dependency_of_the_layer(build_dir):
    layer = build_dir / "BookingCoreLayer" / "python"
    probe = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]")
    modules = ["booking_core.bootstrap", "pymysql", "redis", "kafka", "stripe", "aws_msk_iam_sasl_signer", "boto3",
               "aws_lambda_powertools.logging", "aws_lambda_powertools.metrics"]
    result = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{str(layer)!r}]; "
                             + probe, *modules], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""infra/local/sam-env.json, the `--env-vars` file for `sam local invoke` with Docker (README), works.

SAM overrides only the variables the template declares for a function, so each variable the file sets must be
declared where the file names it ("Parameters": on every function, i.e. in Globals; "<LogicalId>": on that
function). No Docker here: the docker-free `invoke` is given the same file instead, in an environment that sets
none of the variables the file sets, and must behave as it does with the local stack's settings. The copy it gets
differs only in what points at this test run's own services (broker port, database name, outbox folder).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from booking_core import config
from infra.local import template
from tests.integration.test_invoke import check_invoke_result, local_aws_env, sample_events

ROOT = Path(__file__).resolve().parents[2]
SAM_ENV = ROOT / "infra" / "local" / "sam-env.json"
DOC = template.load()


def _declared(logical_id: str | None) -> set[str]:
    globals_vars = DOC["Globals"]["Function"]["Environment"]["Variables"]
    if logical_id is None:
        return set(globals_vars)
    own = (DOC["Resources"][logical_id]["Properties"].get("Environment") or {}).get("Variables") or {}
    return set(globals_vars) | set(own)


def test_every_variable_the_sam_env_file_sets_is_declared_where_it_names_it():
    env_file = json.loads(SAM_ENV.read_text())
    functions = template.functions()
    for scope, variables in env_file.items():
        assert scope == "Parameters" or scope in functions, scope
        undeclared = set(variables) - _declared(None if scope == "Parameters" else scope)
        assert not undeclared, f"{scope}: SAM would ignore {sorted(undeclared)}"


def test_the_sam_env_file_replaces_every_aws_only_setting_a_local_run_would_trip_on():
    env_file = json.loads(SAM_ENV.read_text())
    everywhere = env_file["Parameters"]
    assert everywhere["KAFKA_AUTH"] == "plaintext" and everywhere["MAIL_MODE"] != "ses"
    assert everywhere["DB_SECRET_ARN"] == "" and everywhere["MYSQL_HOST"]
    # Values built with intrinsics name AWS resources; those a function would connect to are replaced.
    for logical_id in template.functions():
        variables = {**DOC["Globals"]["Function"]["Environment"]["Variables"],
                     **((DOC["Resources"][logical_id]["Properties"].get("Environment") or {}).get("Variables") or {})}
        harmless = {"STAGE", "LOG_LEVEL", "MAIL_SENDER", "POWERTOOLS_METRICS_NAMESPACE"}  # defaults work locally
        aws_only = {k for k, v in variables.items() if isinstance(v, dict)} - harmless
        covered = set(everywhere) | set(env_file.get(logical_id, {}))
        assert aws_only <= covered, f"{logical_id}: {sorted(aws_only - covered)}"


def _local_copy(tmp_path: Path, aws_endpoint: str | None = None) -> tuple[Path, dict]:
    """The file as this run's services need it; and the environment without any variable the file sets."""
    env_file = json.loads(SAM_ENV.read_text())
    everywhere = env_file["Parameters"]
    assert everywhere["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    everywhere["KAFKA_BOOTSTRAP_SERVERS"] = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    everywhere["MYSQL_DATABASE"] = config.mysql_settings().database
    everywhere["MAIL_OUTBOX_DIR"] = str(tmp_path / "outbox")
    if aws_endpoint:  # the test stack's local AWS endpoint instead of the documented LOCAL_AWS_PORT=4566
        assert env_file["PostConfirmationFunction"]["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        env_file["PostConfirmationFunction"]["AWS_ENDPOINT_URL"] = aws_endpoint
    path = tmp_path / "sam-env.json"
    path.write_text(json.dumps(env_file))
    from infra.local.stack import child_env_base

    env = {**child_env_base(), "LOG_LEVEL": "INFO", "DECISION_TIMEOUT_S": "1"}
    for variables in env_file.values():
        for name in variables:
            env.pop(name, None)
    return path, env


def _one_event_per_function() -> list[tuple[str, Path]]:
    chosen: dict[str, Path] = {}
    for function, path in sample_events():
        chosen.setdefault(function, path)
    return sorted(chosen.items())


@pytest.mark.integration
@pytest.mark.parametrize("function, event_path", _one_event_per_function(), ids=lambda v: getattr(v, "name", v))
def test_the_docker_free_invoke_given_the_sam_env_file_behaves_as_with_the_stack_settings(
        function, event_path, mysql_db, redis_client, kafka_broker, tmp_path, request):
    aws = local_aws_env(request.getfixturevalue("stack")) if function == "PostConfirmationFunction" else {}
    path, env = _local_copy(tmp_path, aws.get("AWS_ENDPOINT_URL"))
    env.update({k: v for k, v in aws.items() if k != "AWS_ENDPOINT_URL"})  # credentials come from the host, as in SAM

    result = subprocess.run([sys.executable, "-m", "infra.local.invoke", function, "-e", str(event_path),
                             "--env-vars", str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)

    check_invoke_result(function, json.loads(event_path.read_text()), result)

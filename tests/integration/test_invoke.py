"""`python -m infra.local.invoke` runs every function of template.yaml with each of its sample events (as
`sam local invoke` would) against this run's MySQL, Redis and broker; every log line is JSON with the
correlation id; and a function added to a throwaway template runs under the local stack with no other change.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from booking_core import config
from infra.local import services, template
from tests.support import running_stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "infra" / "events"
pytestmark = pytest.mark.integration

KAFKA_TYPES = ("MSK", "SelfManagedKafka")
SCHEDULE_TYPES = ("Schedule", "ScheduleV2")


def _kind(event: dict) -> str:
    if "httpMethod" in event:
        return "api"
    if "eventSource" in event:
        return "kafka"
    if "triggerSource" in event:
        return "cognito"
    return "schedule"


def _function_kinds(function: template.Function) -> set[str]:
    kinds = set()
    for event in function.events:
        kinds |= {"api"} if event.type == "Api" else {"kafka"} if event.type in KAFKA_TYPES else set()
        kinds |= {"schedule"} if event.type in SCHEDULE_TYPES else set()
        kinds |= {"cognito"} if event.type == "Cognito" else set()
    return kinds


def sample_events() -> list[tuple[str, Path]]:
    """(function, event file) for every function: the files in infra/events/<CodeUri folder>/ whose shape
    matches one of the function's event types (API Gateway proxy, Kafka, scheduled/custom input)."""
    pairs = []
    for function in template.functions().values():
        folder = EVENTS / Path(function.code_uri).name
        for path in sorted(folder.glob("*.json")):
            if _kind(json.loads(path.read_text())) in _function_kinds(function):
                pairs.append((function.logical_id, path))
    return pairs


def test_every_function_has_a_sample_event_and_every_sample_event_a_function():
    pairs = sample_events()
    assert {fn for fn, _ in pairs} == set(template.functions())
    assert {path for _, path in pairs} == set(EVENTS.rglob("*.json"))


def _invoke(function: str, event_path: Path, **env) -> subprocess.CompletedProcess:
    from infra.local.stack import child_env_base

    run_env = {**child_env_base(), "LOG_LEVEL": "INFO", "DECISION_TIMEOUT_S": "1", "REPLICATION_RUN_S": "1", **env}
    return subprocess.run([sys.executable, "-m", "infra.local.invoke", function, "-e", str(event_path)],
                          cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=120)


def _record_keys(event: dict) -> set[str]:
    return {base64.b64decode(r["key"]).decode() for batch in event["records"].values() for r in batch if "key" in r}


@pytest.mark.parametrize("function, event_path", sample_events(), ids=lambda v: getattr(v, "name", v))
def test_invoke_runs_the_function_with_its_sample_event_and_prints_the_result(
        function, event_path, mysql_db, redis_client, kafka_broker, request):
    event = json.loads(event_path.read_text())
    aws = local_aws_env(request.getfixturevalue("stack")) if _kind(event) == "cognito" else {}

    result = _invoke(function, event_path, **aws)

    check_invoke_result(function, event, result)


def local_aws_env(stack_url: str) -> dict[str, str]:
    """What a function calling AWS needs to reach the stack's local endpoint (the Cognito trigger calls Cognito)."""
    from infra.local.token import web_config

    return {"AWS_ENDPOINT_URL": web_config(stack_url)["cognitoEndpoint"], "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local"}


def check_invoke_result(function: str, event: dict, result: subprocess.CompletedProcess) -> None:
    """What every invocation of a sample event must show: success, a result of the event's kind, and JSON log
    lines with the function, the correlation id and the trace id (shared with the built-artifact test)."""
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    for line in lines:  # structured logs: JSON, with the service, the correlation id and the trace id
        assert line["service"] and "correlation_id" in line and line["xray_trace_id"].startswith("1-"), line
        # Lines of the invocation carry Powertools' Lambda keys (import-time lines come before any context).
        assert line.get("function_name", function) == function, line
    assert all("function_request_id" in line and "cold_start" in line for line in lines
               if line["logger"].startswith("booking_core")), lines
    kind = _kind(event)
    if kind == "api":
        assert isinstance(answer["statusCode"], int) and answer["statusCode"] < 500, answer
        assert isinstance(answer["body"], str) and isinstance(answer["headers"], dict)
        if event["httpMethod"] == "POST":
            # the key is the signed-in user's (the sample's claims name user 1)
            assert json.loads(answer["body"])["booking_key"] == "1." + event["headers"]["Idempotency-Key"]
    elif kind == "cognito":  # Cognito requires the event back; the user is linked to its MySQL row
        assert answer == event
        assert any(line["message"] == "user registered" and line["user_id"] == 1 for line in lines), result.stderr
    elif kind == "kafka":
        keys = _record_keys(event)
        assert sum(answer.values()) == len(keys), answer
        about_records = [line for line in lines if line["logger"].startswith("booking_core")]
        assert {line["correlation_id"] for line in about_records} <= keys
        if function == "PaymentFunction":
            decided = {line["correlation_id"] for line in about_records if line["message"] == "decided"}
            assert decided == keys, "one correlated log line per decided record"
    else:
        assert isinstance(answer, dict), answer


def test_invoke_of_an_unknown_function_names_the_functions_there_are(mysql_db):
    result = _invoke("NoSuchFunction", EVENTS / "retry_fn" / "scheduled_event.json")

    assert result.returncode == 2
    assert "PaymentFunction" in result.stderr


def test_a_handler_that_raises_is_reported_like_a_lambda_error_with_exit_code_1(tmp_path):
    (tmp_path / "failing").mkdir()
    (tmp_path / "failing" / "app.py").write_text("def handler(event, context):\n    raise ValueError('boom')\n")
    (tmp_path / "template.yaml").write_text(textwrap.dedent("""\
        Transform: AWS::Serverless-2016-10-31
        Resources:
          FailingFunction:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: failing/, Handler: app.handler, Runtime: python3.12}
        """))
    from infra.local.stack import child_env_base

    result = subprocess.run([sys.executable, "-m", "infra.local.invoke", "FailingFunction", "-t",
                             str(tmp_path / "template.yaml")], cwd=ROOT, env=child_env_base(),
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom")


# ---- a throwaway template: one more function, and the local stack runs it ------------------------------

HANDLER = '''\
import json, os, pathlib, uuid


def handler(event, context):
    """Records each invocation as a file, so the test can see what the stack passed in."""
    out = pathlib.Path(os.environ["MARKER_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{uuid.uuid4().hex}.json").write_text(json.dumps({"event": event, "greeting": os.environ["GREETING"],
                                                             "function": context.function_name}))
    return {"ok": True}
'''


def _throwaway_template(tmp_path: Path, group: str) -> Path:
    """A copy of template.yaml next to a new function folder, plus that function with two events."""
    (tmp_path / "hello_fn").mkdir()
    (tmp_path / "hello_fn" / "app.py").write_text(HANDLER)
    marker_dir = tmp_path / "invocations"
    addition = textwrap.indent(textwrap.dedent(f"""\
        HelloFunction:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: hello_fn/
            Handler: app.handler
            Environment:
              Variables:
                MARKER_DIR: "{marker_dir}"
                GREETING: hello from the template
            Events:
              EveryMinute:
                Type: Schedule
                Properties:
                  Schedule: rate(1 minute)
                  Input: '{{"source": "throwaway-schedule"}}'
              Decisions:
                Type: MSK
                Properties:
                  Stream: !Ref MskClusterArn
                  Topics: [booking-decisions]
                  ConsumerGroupId: {group}
                  StartingPosition: LATEST
                  BatchSize: 10
                  MaximumBatchingWindowInSeconds: 0
        """), "  ")
    text = (ROOT / "template.yaml").read_text().replace("\nResources:\n", "\nResources:\n" + addition, 1)
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def _invocations(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (tmp_path / "invocations").glob("*.json")] \
        if (tmp_path / "invocations").exists() else []


def test_a_function_added_to_a_throwaway_template_runs_under_the_local_stack(
        tmp_path, mysql_db, redis_client, kafka_broker):
    from booking_core.adapters.kafka import KafkaPublisher
    from infra.local.stack import child_env_base

    # GIVEN a template with one more function (a schedule and an MSK event) in its own folder
    path = _throwaway_template(tmp_path, group=f"hello-{uuid.uuid4().hex[:8]}")
    env = {**child_env_base(), "STACK_TEMPLATE": str(path), "API_PORT": str(services.free_port()),
           "LOCAL_KAFKA_CONCURRENCY": "1", "REPLICATION_RUN_S": "1"}
    log_path = tmp_path / "stack.log"
    with running_stack(env, log_path):
        assert "HelloFunction" in log_path.read_text()

        # THEN its schedule fired at start with the event's Input and the template's environment
        scheduled = wait_for(lambda: [i for i in _invocations(tmp_path) if "records" not in i["event"]], 20)
        assert scheduled and scheduled[0]["event"] == {"source": "throwaway-schedule"}
        assert scheduled[0]["greeting"] == "hello from the template"
        assert scheduled[0]["function"] == "HelloFunction"

        # WHEN a record arrives on its topic, THEN its poller hands it over as an MSK event
        key = f"throwaway-{uuid.uuid4().hex}"
        publisher = KafkaPublisher()
        publisher.publish(config.decisions_topic(), key, json.dumps(
            {"type": "booking.decided", "version": 1, "booking_key": key, "status": "confirmed"}).encode())
        publisher.close()
        consumed = wait_for(lambda: [i for i in _invocations(tmp_path) if "records" in i["event"]
                                      and key in str(_record_keys(i["event"]))], 20)
        assert consumed and consumed[0]["event"]["eventSource"] == "aws:kafka"


def test_trigger_runs_a_functions_schedule_once_and_prints_only_its_result(mysql_db, redis_client, kafka_broker):
    from infra.local.stack import child_env_base

    result = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", "RetryFunction"], cwd=ROOT,
                            env={**child_env_base(), "LOG_LEVEL": "INFO"}, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


def test_trigger_of_a_function_without_a_schedule_names_the_scheduled_ones(mysql_db):
    from infra.local.stack import child_env_base

    result = subprocess.run([sys.executable, "-m", "infra.local.scheduler", "--trigger", "PaymentFunction"],
                            cwd=ROOT, env=child_env_base(), capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert "ReplicationFunction" in result.stderr and "RetryFunction" in result.stderr

"""template.yaml: what the issue asks of it, beyond what cfn-lint can know (the lint runs in test_foundation)."""
from infra.local import template

DOC = template.load()
RESOURCES = DOC["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}


def _statements(function: dict) -> list[dict]:
    return [s for policy in function["Properties"].get("Policies", []) if isinstance(policy, dict)
            for s in policy.get("Statement", [])]


def test_the_deployment_is_configured_through_parameters():
    assert {"Stage", "MskClusterArn", "KafkaBootstrapServers", "DatabaseSecretArn", "RedisUrl", "SubnetIds",
            "SecurityGroupIds", "LogRetentionDays", "MailSender"} <= set(DOC["Parameters"])


def test_globals_set_runtime_timeout_memory_tracing_and_log_level():
    globals_fn = DOC["Globals"]["Function"]
    assert {"Runtime", "Timeout", "MemorySize", "Tracing", "Layers", "VpcConfig"} <= set(globals_fn)
    assert "LOG_LEVEL" in globals_fn["Environment"]["Variables"]


def test_kafka_events_name_group_position_and_batch_and_the_booking_path_does_not_wait_for_a_window():
    kafka_events = [(fn, e) for fn, f in FUNCTIONS.items() for e in f["Properties"].get("Events", {}).values()
                    if e["Type"] in ("MSK", "SelfManagedKafka")]
    assert {fn for fn, _ in kafka_events} == {"PaymentFunction", "DecisionsListenerFunction"}
    for _, event in kafka_events:
        props = event["Properties"]
        assert {"ConsumerGroupId", "StartingPosition", "BatchSize", "Topics"} <= set(props)
        assert props["MaximumBatchingWindowInSeconds"] == 0


def test_replication_runs_every_minute_and_retry_nightly():
    def schedules(name):
        return [e["Properties"]["Schedule"] for e in FUNCTIONS[name]["Properties"]["Events"].values()]

    assert schedules("ReplicationFunction") == ["rate(1 minute)"]
    assert schedules("RetryFunction")[0].startswith("cron(")


def test_no_function_is_allowed_an_action_on_every_resource():
    for name, function in FUNCTIONS.items():
        for statement in _statements(function):
            assert statement["Resource"] != "*", f"{name}: {statement['Action']}"
            assert not any(a.endswith(":*") for a in statement["Action"]), name


def test_only_the_functions_that_send_email_may_use_ses_and_only_from_the_sender():
    senders = {name for name, f in FUNCTIONS.items()
               if any("ses:SendEmail" in s["Action"] for s in _statements(f))}
    assert senders == {"PaymentFunction", "RetryFunction"}
    for name in senders:
        (statement,) = [s for s in _statements(FUNCTIONS[name]) if "ses:SendEmail" in s["Action"]]
        assert statement["Condition"]["StringEquals"]["ses:FromAddress"] == {"Ref": "MailSender"}


def test_every_function_logs_to_its_own_log_group_with_the_retention_parameter():
    groups = [f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in FUNCTIONS.values()]
    assert len(set(groups)) == len(FUNCTIONS)
    for group in groups:
        assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_api_url_is_an_output():
    assert "execute-api" in DOC["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]


def test_both_kafka_mappings_start_at_the_oldest_record_so_none_published_before_the_first_poll_is_skipped():
    for name in ("PaymentFunction", "DecisionsListenerFunction"):
        (event,) = FUNCTIONS[name]["Properties"]["Events"].values()
        assert event["Properties"]["StartingPosition"] == "TRIM_HORIZON", name

"""template.yaml: what the issue asks of it, beyond what cfn-lint can know (the lint runs in test_foundation)."""
from infra.local import template

DOC = template.load()
RESOURCES = DOC["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}


def _statements(function: dict) -> list[dict]:
    """Every policy statement, a conditional one (!If [cond, statement, AWS::NoValue]) as its statement."""
    found = []
    for policy in function["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if "Fn::If" in statement:
                found += [s for s in statement["Fn::If"][1:] if "Effect" in s]
            else:
                found.append(statement)
    return found


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


def test_the_payment_provider_is_stripe_where_its_secret_is_given_and_prod_cannot_deploy_without_it():
    payment = FUNCTIONS["PaymentFunction"]["Properties"]
    variables = payment["Environment"]["Variables"]
    assert variables["PAYMENT_PROVIDER"] == {"Fn::If": ["HasStripeSecret", "stripe", "sandbox"]}
    assert variables["STRIPE_SECRET_ARN"] == {"Ref": "StripeSecretArn"}
    assert DOC["Conditions"]["HasStripeSecret"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StripeSecretArn"}, ""]}]}
    rule = DOC["Rules"]["ProdChargesThroughStripe"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert rule["Assertions"][0]["Assert"] == DOC["Conditions"]["HasStripeSecret"]


def test_only_the_payment_function_may_read_the_stripe_secret_and_only_that_secret():
    readers = {name: [s for s in _statements(f) if s["Resource"] == {"Ref": "StripeSecretArn"}]
               for name, f in FUNCTIONS.items()}
    assert {name for name, found in readers.items() if found} == {"PaymentFunction"}
    (statement,) = readers["PaymentFunction"]
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]


def test_locally_the_conditional_provider_is_dropped_so_the_sandbox_default_applies():
    local = template.functions()["PaymentFunction"].local_environment()
    assert "PAYMENT_PROVIDER" not in local and "STRIPE_SECRET_ARN" not in local


def _alarms() -> dict[str, dict]:
    return {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def _dims(alarm: dict) -> dict:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def test_alarms_watch_both_mappings_offset_lag_and_every_functions_errors():
    alarms = _alarms().values()
    lagging = {_dims(a)["FunctionName"]["Ref"] for a in alarms if a["MetricName"] == "OffsetLag"}
    assert lagging == {"PaymentFunction", "DecisionsListenerFunction"}
    erring = {_dims(a)["FunctionName"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}
    assert erring == set(FUNCTIONS)
    for alarm in alarms:
        assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                                    {"Ref": "AWS::NoValue"}]}


def test_the_custom_metric_alarms_read_what_the_handlers_emit():
    from booking_core import metrics

    namespace = DOC["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    custom = {a["MetricName"]: a for a in _alarms().values() if a["Namespace"] != "AWS/Lambda"}
    assert set(custom) == {metrics.RETRY_ROWS_DEAD, metrics.REPLICATION_LAG}
    for name, module in ((metrics.RETRY_ROWS_DEAD, "retry_fn/app.py"),
                         (metrics.REPLICATION_LAG, "replication_fn/app.py")):
        assert custom[name]["Namespace"] == namespace
        service = _dims(custom[name])["service"]
        assert f'metrics.setup("{service}")' in (template.ROOT / module).read_text()


def test_the_samconfig_example_names_every_parameter_and_only_parameters_of_the_template():
    import tomllib

    config = tomllib.loads((template.ROOT / "samconfig.toml.example").read_text())
    for env in ("default", "prod"):
        overrides = dict(item.split("=", 1) for item in config[env]["deploy"]["parameters"]["parameter_overrides"])
        assert set(overrides) <= set(DOC["Parameters"]), env
        required = {name for name, p in DOC["Parameters"].items() if "Default" not in p}
        assert required <= set(overrides), (env, required - set(overrides))
    assert set(DOC["Parameters"]) == set(dict(item.split("=", 1) for item in
                                              config["default"]["deploy"]["parameters"]["parameter_overrides"]))
    prod = dict(item.split("=", 1) for item in config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert prod["Stage"] == "prod" and prod["StripeSecretArn"].startswith("arn:aws:secretsmanager:")

"""How the local runners read a template: handlers resolved from the template's folder, SAM-style environment."""
import json
import sys
import textwrap

import pytest

from infra.local import template

TEMPLATE = textwrap.dedent("""\
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Secret: {Type: String}
    Globals:
      Function:
        Timeout: 20
        Environment:
          Variables:
            SHARED: from-globals
            FROM_AWS: !Ref Secret
    Resources:
      Shared:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: shared_layer/}
      Greeter:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: greeter/
          Handler: main.greet
          MemorySize: 256
          Environment:
            Variables: {OWN: from-template, OVERRIDDEN: template-value}
          Events:
            Nightly:
              Type: ScheduleV2
              Properties:
                ScheduleExpression: cron(0 3 * * ? *)
    """)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "greeter").mkdir()
    (tmp_path / "greeter" / "main.py").write_text(
        "from greeting_words import HELLO\n\ndef greet(event, context):\n    return f'{HELLO} {event[\"name\"]}'\n")
    (tmp_path / "shared_layer").mkdir()
    (tmp_path / "shared_layer" / "greeting_words.py").write_text("HELLO = 'hello'\n")
    (tmp_path / "env.json").write_text(json.dumps({"Parameters": {"SHARED": "from-env-json"},
                                                   "Greeter": {"OVERRIDDEN": "for-greeter"}}))
    for name in ("SHARED", "OWN", "OVERRIDDEN", "FROM_AWS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_handler adds the template's folders
    yield tmp_path
    for module in ("greeter", "greeter.main", "greeting_words"):
        sys.modules.pop(module, None)


def test_a_handler_is_imported_from_the_templates_folder_with_its_layers_on_the_path(project, monkeypatch):
    greeter = template.functions(project / "template.yaml")["Greeter"]

    assert greeter.module_name == "greeter.main"
    assert greeter.load_handler()({"name": "Ana"}, None) == "hello Ana"
    assert (greeter.timeout, greeter.memory_mb) == (20, 256)
    assert [(e.name, e.type) for e in greeter.events] == [("Nightly", "ScheduleV2")]


def test_the_environment_is_template_literals_then_env_json_then_the_shell(project, monkeypatch):
    monkeypatch.setenv("OWN", "from-shell")
    greeter = template.functions(project / "template.yaml")["Greeter"]

    env = greeter.local_environment(project / "env.json")

    assert env["SHARED"] == "from-env-json"
    assert env["OVERRIDDEN"] == "for-greeter"
    assert env["OWN"] == "from-shell"
    assert "FROM_AWS" not in env, "a value built with !Ref exists only on AWS"


def test_the_repository_functions_keep_their_package_paths():
    modules = {f.logical_id: f.module_name for f in template.functions().values()}

    assert modules["PaymentFunction"] == "payment_fn.app"
    assert modules["DecisionsListenerFunction"] == "booking_api.listener"


def test_a_functions_local_poller_count_comes_from_the_environment_then_its_metadata_then_the_default(monkeypatch):
    from infra.local import template
    from infra.local.stack import kafka_concurrency

    listener = template.functions()["DecisionsListenerFunction"]
    assert kafka_concurrency(listener.logical_id, 2, listener.metadata) == 1  # template Metadata: LocalPollers
    assert kafka_concurrency("PaymentFunction", 2, {}) == 2
    monkeypatch.setenv("LOCAL_KAFKA_CONCURRENCY_DecisionsListenerFunction", "3")
    assert kafka_concurrency(listener.logical_id, 2, listener.metadata) == 3

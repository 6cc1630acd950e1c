"""Read template.yaml the way the local stack needs it: functions, their handlers, environment and events."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Accepts CloudFormation short tags (!Ref, !Sub, ...) as {"Fn::X": value} so the file parses."""


def _tag(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclass
class Event:
    name: str
    type: str
    properties: dict


@dataclass
class Function:
    logical_id: str
    code_uri: str
    handler: str
    environment: dict[str, str]
    events: list[Event] = field(default_factory=list)
    timeout: int = 3

    @property
    def module_name(self) -> str:
        """The handler module as a package path from the repo root (payment_fn/ + app.handler → payment_fn.app)."""
        package = self.code_uri.strip("/").replace("/", ".")
        module, _, _ = self.handler.rpartition(".")
        return f"{package}.{module}" if package else module

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]

    def load_handler(self):
        return getattr(importlib.import_module(self.module_name), self.attribute)

    def local_environment(self, overrides_path: Path | None = None) -> dict[str, str]:
        """What the function sees locally, like `sam local invoke --env-vars`: the template's literal values,
        replaced by the overrides file (infra/local/env.json: "Parameters" for all, "<LogicalId>" for one),
        replaced by variables already set in this process's environment."""
        overrides = local_overrides(overrides_path)
        env = dict(self.environment)
        for scope in ("Parameters", self.logical_id):
            env.update({k: str(v) for k, v in (overrides.get(scope) or {}).items()})
        env.update({k: os.environ[k] for k in env if k in os.environ})
        return env

    def apply_environment(self, overrides_path: Path | None = None) -> None:
        os.environ.update(self.local_environment(overrides_path))


LOCAL_OVERRIDES = ROOT / "infra" / "local" / "env.json"


def local_overrides(path: Path | None = None) -> dict:
    import json

    path = path or LOCAL_OVERRIDES
    return json.loads(path.read_text()) if path.exists() else {}


def load(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def _literal_env(variables: dict) -> dict[str, str]:
    # Values built with intrinsics (!Ref Parameter...) only exist on AWS: locally the defaults in
    # booking_core.config or the caller's environment apply.
    return {k: str(v) for k, v in (variables or {}).items() if not isinstance(v, dict)}


def functions(path: Path = TEMPLATE) -> dict[str, Function]:
    doc = load(path)
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    global_env = _literal_env(((globals_fn.get("Environment") or {}).get("Variables")) or {})
    found = {}
    for logical_id, resource in (doc.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        env = dict(global_env)
        env.update(_literal_env(((props.get("Environment") or {}).get("Variables")) or {}))
        events = [Event(name, ev.get("Type"), ev.get("Properties") or {})
                  for name, ev in (props.get("Events") or {}).items()]
        found[logical_id] = Function(logical_id, props.get("CodeUri", ""), props["Handler"], env, events,
                                     int(props.get("Timeout", globals_fn.get("Timeout", 3))))
    return found

"""Read template.yaml the way the local stack needs it: functions, their handlers, environment and events."""
from __future__ import annotations

import importlib
import os
import sys
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
    # The template's folder: CodeUri (and layer ContentUri) paths are relative to it, as for `sam build`.
    base_dir: Path = ROOT
    layer_dirs: list[Path] = field(default_factory=list)
    # Logical ids of those layers: `sam build` writes each to <build dir>/<LogicalId>/python.
    layer_ids: list[str] = field(default_factory=list)
    memory_mb: int = 128
    # The resource's Metadata: `LocalPollers` sets the local poller processes per Kafka event of this function.
    metadata: dict = field(default_factory=dict)

    @property
    def module_name(self) -> str:
        """The handler module as a package path from the template's folder (payment_fn/ + app.handler →
        payment_fn.app), so functions whose modules share a name (app.py) never collide in one process."""
        package = ".".join(part for part in Path(self.code_uri or ".").parts if part not in (".", "/"))
        module, _, _ = self.handler.rpartition(".")
        return f"{package}.{module}" if package else module

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]

    def load_handler(self):
        """Import the handler, with the template's folder and its layers' folders importable (as on Lambda,
        where a layer's python/ folder is on the path)."""
        for path in (self.base_dir, *self.layer_dirs):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
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


def _layer_dirs(resources: dict, base_dir: Path) -> dict[str, Path]:
    """Folders of the template's layers that exist locally (the repo's layer/ holds booking_core), by logical id."""
    dirs = {}
    for logical_id, resource in resources.items():
        content_uri = (resource.get("Properties") or {}).get("ContentUri")
        if resource.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(content_uri, str):
            folder = (base_dir / content_uri).resolve()
            if folder.is_dir():
                dirs[logical_id] = folder
    return dirs


def functions(path: Path = TEMPLATE) -> dict[str, Function]:
    """Every AWS::Serverless::Function of the template, with Globals applied, by logical id."""
    path = Path(path).resolve()
    doc = load(path)
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    global_env = _literal_env(((globals_fn.get("Environment") or {}).get("Variables")) or {})
    resources = doc.get("Resources") or {}
    layer_dirs = _layer_dirs(resources, path.parent)
    found = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        env = dict(global_env)
        env.update(_literal_env(((props.get("Environment") or {}).get("Variables")) or {}))
        events = [Event(name, ev.get("Type"), ev.get("Properties") or {})
                  for name, ev in (props.get("Events") or {}).items()]
        found[logical_id] = Function(logical_id, props.get("CodeUri", ""), props["Handler"], env, events,
                                     int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                                     base_dir=path.parent, layer_dirs=list(layer_dirs.values()),
                                     layer_ids=list(layer_dirs),
                                     memory_mb=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
                                     metadata=resource.get("Metadata") or {})
    return found

"""Transform template.yaml with aws-sam-translator and lint the result with cfn-lint.

Linting the raw SAM template misses errors inside event properties; the transformed CloudFormation is what
AWS deploys, so that is what we lint. Local CodeUri/ContentUri folders are replaced by S3 URIs first, as
`sam package` would do. Usage: python -m infra.sam_lint [template.yaml]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def transform(template_path: Path) -> dict:
    from samtranslator.translator.transform import transform as sam_transform
    from samtranslator.yaml_helper import yaml_parse

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(template_path.read_text())
    for name, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(props.get(uri), str) and not props[uri].startswith("s3://"):
                props[uri] = f"s3://deploy-bucket/{name}.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    return sam_transform(template, {}, NoManagedPolicies())


def lint(template_path: Path = ROOT / "template.yaml") -> tuple[int, str]:
    """Return (cfn-lint exit code, its output) for the transformed template."""
    transformed = transform(template_path)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(transformed, handle, indent=1)
        path = handle.name
    try:
        proc = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), path], capture_output=True, text=True)
        return proc.returncode, proc.stdout + proc.stderr
    finally:
        os.unlink(path)


if __name__ == "__main__":
    code, output = lint(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml")
    print(output or "transformed template: cfn-lint clean")
    sys.exit(code)

"""Deploy the web client (web/) to a stack's bucket and CloudFront distribution (template.yaml, WebBucket).

    python -m infra.deploy_web --stack NAME        (make deploy-web STACK=NAME)

Reads the stack's outputs, uploads every file of web/ with the Content-Type and Cache-Control the local API serves
it with (infra/local/web.py: one place for both), writes config.json from the outputs (the keys the local
/config.json has), deletes the objects web/ no longer has, then invalidates the distribution. Unchanged objects are
left as they are, so a second run uploads nothing; every run invalidates, so a run that stopped before its
invalidation is completed by the next. Credentials come from boto3's usual chain and are never printed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.web import CONTENT_TYPES, LONG_LIVED, REVALIDATE, WEB_ROOT

CONFIG_KEY = "config.json"
# Written last: the page, its worker and its settings name the other files, which are all in place by then.
ENTRY_POINTS = ("manifest.webmanifest", CONFIG_KEY, "sw.js", "index.html")
# The outputs config.json is made of (template.yaml Outputs), by config.json key.
CONFIG_OUTPUTS = {
    "apiUrl": "WebUrl",  # CloudFront serves the API on the page's own origin
    "region": "Region",
    "userPoolId": "UserPoolId",
    "userPoolClientId": "UserPoolClientId",
    "cognitoEndpoint": "CognitoEndpoint",
}
REQUIRED_OUTPUTS = ("WebBucketName", "WebDistributionId", *CONFIG_OUTPUTS.values())


class DeployError(Exception):
    """Why the web client cannot be deployed (said to the person running it)."""


@dataclass(frozen=True)
class WebObject:
    key: str
    body: bytes
    content_type: str
    cache_control: str

    @property
    def md5(self) -> str:
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()


@dataclass
class Summary:
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    invalidation_id: str = ""


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key (CloudFormation DescribeStacks)."""
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def web_config(outputs: dict[str, str]) -> dict[str, str]:
    """config.json: the keys and meaning of the local GET /config.json (infra/local/gateway.web_config)."""
    return {key: outputs[output] for key, output in CONFIG_OUTPUTS.items()}


def cache_control(key: str) -> str:
    return LONG_LIVED.get(Path(key).suffix, REVALIDATE)


def web_objects(outputs: dict[str, str], root: Path = WEB_ROOT) -> list[WebObject]:
    """Every file under `root` (hidden ones aside) and config.json, in upload order: entry points last."""
    objects = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in key.split("/")):
            continue
        if path.suffix not in CONTENT_TYPES:
            raise DeployError(f"web/{key}: no content type for {path.suffix or 'a file without a suffix'}; add it to "
                              "CONTENT_TYPES in infra/local/web.py (which serves it locally)")
        objects[key] = path.read_bytes()
    objects[CONFIG_KEY] = (json.dumps(web_config(outputs), indent=2) + "\n").encode()
    order = sorted(objects, key=lambda key: (ENTRY_POINTS.index(key) if key in ENTRY_POINTS else -1, key))
    return [WebObject(key, objects[key], CONTENT_TYPES[Path(key).suffix], cache_control(key)) for key in order]


def _existing(s3: Any, bucket: str) -> dict[str, str]:
    """Key → ETag (quotes removed) of every object in the bucket."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = item["ETag"].strip('"')
    return found


def _unchanged(s3: Any, bucket: str, obj: WebObject, etag: str | None) -> bool:
    if etag != obj.md5:  # a single-part upload's ETag is its MD5 (SSE-S3; SSE-KMS would break this)
        return False
    head = s3.head_object(Bucket=bucket, Key=obj.key)
    return bool(head.get("ContentType") == obj.content_type and head.get("CacheControl") == obj.cache_control)


def deploy(outputs: dict[str, str], s3: Any, cloudfront: Any, root: Path = WEB_ROOT,
           say: Callable[[str], None] = print) -> Summary:
    """Make the stack's bucket hold exactly web/ plus config.json, then invalidate its distribution."""
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        raise DeployError(f"the stack has no output {', '.join(missing)}: deploy template.yaml (sam deploy) first")
    bucket, distribution = outputs["WebBucketName"], outputs["WebDistributionId"]
    objects = web_objects(outputs, root)
    existing = _existing(s3, bucket)
    summary = Summary()
    for obj in objects:
        if _unchanged(s3, bucket, obj, existing.get(obj.key)):
            summary.unchanged.append(obj.key)
            continue
        s3.put_object(Bucket=bucket, Key=obj.key, Body=obj.body, ContentType=obj.content_type,
                      CacheControl=obj.cache_control)
        summary.uploaded.append(obj.key)
        say(f"uploaded s3://{bucket}/{obj.key} ({obj.content_type}; {obj.cache_control})")
    stale = sorted(set(existing) - {obj.key for obj in objects})
    for batch in _batches(stale, 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
        if answer.get("Errors"):  # Quiet: only the keys that could not be deleted are listed
            raise DeployError("could not delete " + ", ".join(f"{e['Key']} ({e.get('Code')})" for e in answer["Errors"]))
    for key in stale:
        say(f"deleted s3://{bucket}/{key} (no longer in web/)")
    summary.deleted = stale
    summary.invalidation_id = cloudfront.create_invalidation(DistributionId=distribution, InvalidationBatch={
        "Paths": {"Quantity": 1, "Items": ["/*"]},
        "CallerReference": f"deploy-web-{time.time_ns()}-{uuid.uuid4().hex[:8]}",
    })["Invalidation"]["Id"]
    say(f"{len(summary.uploaded)} uploaded, {len(summary.unchanged)} unchanged, {len(summary.deleted)} deleted; "
        f"invalidation {summary.invalidation_id} of /* on distribution {distribution}")
    say(f"the app: {outputs['WebUrl']}/")
    return summary


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy_web", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the CloudFormation stack (sam deploy's stack_name)")
    parser.add_argument("--region", help="the stack's region (default: the AWS_REGION / profile's region)")
    args = parser.parse_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(region_name=args.region)
    try:
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        print(f"stack {args.stack} ({session.region_name}): bucket {outputs.get('WebBucketName')}, "
              f"distribution {outputs.get('WebDistributionId')}")
        deploy(outputs, session.client("s3"), session.client("cloudfront"))
    except (DeployError, BotoCoreError, ClientError) as exc:  # their messages name no credential
        print(f"deploy-web: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

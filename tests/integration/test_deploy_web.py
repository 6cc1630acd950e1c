"""`make deploy-web STACK=...` as the README shows it, against the local AWS endpoint (moto's server, as the local
stack runs it) instead of an AWS account: a stack with the template's outputs, the endpoint's own user pool and
a distribution; the command run twice in its own process, as a reader runs it (no PYTHONPATH)."""
from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest

from infra.local import services, template
from infra.local.stack import child_env_base
from infra.local.web import WEB_ROOT
from tests.conftest import ROOT, RUN_ID
from tests.unit.test_deploy_web import _test_stack_template

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STACK = f"booking-deploy-web-{RUN_ID}"
# moto takes any credentials: these are distinctive, so the output can be searched for them.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIADEPLOYWEBINTEG01", "AWS_SECRET_ACCESS_KEY": "deploy-web-integration-secret"}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    aws = services.start_aws_endpoint(services.free_port(), template.TEMPLATE, tmp_path_factory.mktemp("aws"),
                                      child_env_base(), ROOT / ".local" / "logs" / f"aws-deploy-web-{RUN_ID}.log")
    try:
        yield aws.details
    finally:
        aws.stop()


@pytest.fixture(scope="module")
def deployed_stack(endpoint) -> dict:
    def client(name):
        return boto3.client(name, endpoint_url=endpoint["endpoint"], region_name=endpoint["region"],
                            aws_access_key_id="local", aws_secret_access_key="local")

    distribution = client("cloudfront").create_distribution(DistributionConfig={
        "CallerReference": STACK, "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "web", "DomainName": "web.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "web", "ViewerProtocolPolicy": "redirect-to-https"},
    })["Distribution"]
    values = {"WebDistribution": distribution["Id"], "WebDistributionDomain": distribution["DomainName"],
              "UserPool": endpoint["userPoolId"], "UserPoolClient": endpoint["userPoolClientId"]}
    cloudformation = client("cloudformation")
    cloudformation.create_stack(StackName=STACK, TemplateBody=_test_stack_template(), Parameters=[
        {"ParameterKey": key, "ParameterValue": value} for key, value in values.items()])
    (stack,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
    return {"outputs": {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}, "s3": client("s3"),
            "cloudfront": client("cloudfront"), "endpoint": endpoint}


def _make_deploy_web(endpoint: dict) -> subprocess.CompletedProcess:
    env = {**child_env_base(), **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint["endpoint"]}
    env.pop("PYTHONPATH", None)  # as in a reader's shell: the Makefile finds the packages itself
    return subprocess.run(["make", "-s", "deploy-web", f"STACK={STACK}", f"REGION={endpoint['region']}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_make_deploy_web_fills_the_bucket_writes_config_json_and_invalidates_and_a_rerun_changes_nothing(
        deployed_stack):
    outputs, s3 = deployed_stack["outputs"], deployed_stack["s3"]
    bucket = outputs["WebBucketName"]
    s3.put_object(Bucket=bucket, Key="old-page.html", Body=b"<!doctype html>")

    first = _make_deploy_web(deployed_stack["endpoint"])

    assert first.returncode == 0, first.stdout + first.stderr
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    web_files = {p.relative_to(WEB_ROOT).as_posix() for p in WEB_ROOT.rglob("*") if p.is_file()}
    assert keys == web_files | {"config.json"}
    config = json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read())
    assert config == {"apiUrl": outputs["WebUrl"], "region": deployed_stack["endpoint"]["region"],
                      "userPoolId": deployed_stack["endpoint"]["userPoolId"],
                      "userPoolClientId": deployed_stack["endpoint"]["userPoolClientId"],
                      "cognitoEndpoint": outputs["CognitoEndpoint"]}
    assert s3.head_object(Bucket=bucket, Key="index.html")["ContentType"].startswith("text/html")
    assert "deleted" in first.stdout and "old-page.html" in first.stdout
    assert outputs["WebUrl"] in first.stdout

    second = _make_deploy_web(deployed_stack["endpoint"])

    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 uploaded" in second.stdout and "0 deleted" in second.stdout
    invalidations = deployed_stack["cloudfront"].list_invalidations(DistributionId=outputs["WebDistributionId"])
    assert invalidations["InvalidationList"]["Quantity"] == 2
    for secret in CREDENTIALS.values():
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr


def test_make_deploy_web_without_a_stack_name_says_how_to_call_it():
    result = subprocess.run(["make", "-s", "deploy-web"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "STACK"})

    assert result.returncode != 0
    assert "usage: make deploy-web STACK=" in result.stderr

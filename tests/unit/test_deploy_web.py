"""infra/deploy_web.py against moto (in process): a stack made of template.yaml's own user pool, app client, web
bucket and outputs, with a CloudFront distribution; web/ uploaded with its types and cache headers, config.json as
web/js reads it, stale objects deleted, an invalidation made, and a second run that changes nothing."""
from __future__ import annotations

import functools
import json
import re

import boto3
import pytest
from moto import mock_aws

from infra import deploy_web
from infra.local import template
from infra.local.web import WEB_ROOT, response_for

REGION = "eu-west-1"
STACK = "booking-webtest"
ACCESS_KEY, SECRET_KEY = "AKIADEPLOYWEBTEST01", "deploy-web-secret-never-printed"
WEB_FILES = sorted(p.relative_to(WEB_ROOT).as_posix() for p in WEB_ROOT.rglob("*") if p.is_file())
# What a browser must be told for each kind of file, said here on its own (not read from the code under test).
EXPECTED_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
                  ".webmanifest": "application/manifest+json", ".svg": "image/svg+xml", ".png": "image/png"}
# Revalidated on every load (ETag, 304): the page, its worker (a new sw.js, with new cache names, is only seen when
# it is fresh), its settings, its manifest, and - without content-hashed names - the modules and styles the page
# and the worker's network-first shell fetch. Only the PNG icons, which do not change, are kept a while.
KEPT_A_WHILE = {".png"}


@functools.cache
def _test_stack_template() -> str:
    """template.yaml's WebBucket and the outputs deploy_web reads, as the template words them. What moto's
    CloudFormation cannot create (the distribution, the user pool and its client) is made beforehand and passed
    in as a parameter of the resource's name, so each output's !Ref still names it; the distribution's domain
    name is one more parameter."""
    doc = template.load()
    outputs = {key: doc["Outputs"][key] for key in deploy_web.REQUIRED_OUTPUTS}
    text = json.dumps(outputs).replace("${WebDistribution.DomainName}", "${WebDistributionDomain}")
    parameters = ("WebDistribution", "WebDistributionDomain", "UserPool", "UserPoolClient")
    return json.dumps({
        "Parameters": {name: {"Type": "String"} for name in parameters},
        "Resources": {"WebBucket": doc["Resources"]["WebBucket"]},
        "Outputs": json.loads(text),
    })


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def stack(aws) -> dict:
    """The deployed stack's outputs, and the clients deploy_web is given."""
    cloudfront = boto3.client("cloudfront")
    distribution = cloudfront.create_distribution(DistributionConfig={
        "CallerReference": "web", "Comment": "", "Enabled": True, "DefaultRootObject": "index.html",
        "Origins": {"Quantity": 1, "Items": [{"Id": "web", "DomainName": "web.s3.eu-west-1.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "web", "ViewerProtocolPolicy": "redirect-to-https"},
    })["Distribution"]
    idp = boto3.client("cognito-idp", region_name=REGION)
    pool = idp.create_user_pool(PoolName=f"{STACK}-users", UsernameAttributes=["email"])["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool, ClientName="web")["UserPoolClient"]["ClientId"]
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    values = {"WebDistribution": distribution["Id"], "WebDistributionDomain": distribution["DomainName"],
              "UserPool": pool, "UserPoolClient": client}
    cloudformation.create_stack(StackName=STACK, TemplateBody=_test_stack_template(), Parameters=[
        {"ParameterKey": key, "ParameterValue": value} for key, value in values.items()])
    return {"outputs": deploy_web.stack_outputs(cloudformation, STACK), "distribution": distribution,
            "s3": boto3.client("s3", region_name=REGION), "cloudfront": cloudfront}


def _objects(s3, bucket: str) -> dict[str, dict]:
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key) for key in keys}


def _keys_web_js_reads() -> set[str]:
    """The config.json keys the client's modules take: `const { a, b } = await config()` and `(await config()).a`."""
    source = "\n".join(path.read_text() for path in (WEB_ROOT / "js").glob("*.js"))
    keys = set()
    for names in re.findall(r"\{([^{}]*)\}\s*=\s*await\s+config\(\)", source):
        keys |= {name.split(":")[0].strip() for name in names.split(",") if name.strip()}
    keys |= set(re.findall(r"\(await\s+config\(\)\)\.(\w+)", source))
    return keys


def test_the_outputs_of_the_stack_are_read_and_name_what_config_json_needs(stack):
    outputs = stack["outputs"]

    assert set(deploy_web.REQUIRED_OUTPUTS) <= set(outputs)
    config = deploy_web.web_config(outputs)
    assert config["apiUrl"] == f"https://{stack['distribution']['DomainName']}"  # the API on the page's origin
    assert config["region"] == REGION
    assert config["cognitoEndpoint"] == f"https://cognito-idp.{REGION}.amazonaws.com/"
    idp = boto3.client("cognito-idp", region_name=REGION)
    client = idp.describe_user_pool_client(UserPoolId=config["userPoolId"], ClientId=config["userPoolClientId"])
    assert client["UserPoolClient"]["ClientName"] == "web"


def test_config_json_has_the_local_keys_and_every_key_web_js_reads():
    from infra.local import gateway

    outputs = {key: f"value-of-{key}" for key in deploy_web.REQUIRED_OUTPUTS}
    config = deploy_web.web_config(outputs)
    read = _keys_web_js_reads()

    assert set(config) == set(gateway.web_config(None)), "the same keys as the local GET /config.json"
    assert {"apiUrl", "cognitoEndpoint", "userPoolClientId"} <= read, read  # the scan found the modules' reads
    assert read <= set(config)
    assert all(config.values())


def test_a_deploy_uploads_web_with_types_and_cache_headers_writes_config_deletes_stale_and_invalidates(stack):
    outputs, s3, cloudfront = stack["outputs"], stack["s3"], stack["cloudfront"]
    bucket = outputs["WebBucketName"]
    s3.put_object(Bucket=bucket, Key="js/removed-module.js", Body=b"export {};")
    said = []

    summary = deploy_web.deploy(outputs, s3, cloudfront, say=said.append)

    objects = _objects(s3, bucket)
    assert set(objects) == set(WEB_FILES) | {"config.json"}, "js/removed-module.js is gone, nothing else is"
    for key, obj in objects.items():
        suffix = "." + key.rsplit(".", 1)[1]
        assert obj["ContentType"].split(";")[0] == EXPECTED_TYPES[suffix], key
        if suffix in KEPT_A_WHILE:
            assert re.fullmatch(r"public, max-age=\d+", obj["CacheControl"]), key
        else:
            assert obj["CacheControl"] == "no-cache", key
        if key != "config.json":
            assert obj["Body"].read() == (WEB_ROOT / key).read_bytes(), key
    assert json.loads(objects["config.json"]["Body"].read()) == deploy_web.web_config(outputs)
    assert summary.deleted == ["js/removed-module.js"]
    assert summary.uploaded[-1] == "index.html", "the page last, once everything it names is there"

    (invalidation,) = cloudfront.list_invalidations(
        DistributionId=outputs["WebDistributionId"])["InvalidationList"]["Items"]
    assert invalidation["Id"] == summary.invalidation_id
    paths = cloudfront.get_invalidation(DistributionId=outputs["WebDistributionId"], Id=invalidation["Id"])
    assert paths["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] == ["/*"]
    assert any("deleted" in line and "js/removed-module.js" in line for line in said)



def test_each_file_has_the_type_and_cache_header_the_local_api_serves_it_with():
    outputs = {key: f"https://{key.lower()}.example" for key in deploy_web.REQUIRED_OUTPUTS}
    objects = [obj for obj in deploy_web.web_objects(outputs) if obj.key != "config.json"]  # the gateway's, locally
    assert len(objects) == len(WEB_FILES)
    for obj in objects:
        status, headers, _ = response_for("/" + obj.key, {}, deploy_web.web_config(outputs))
        assert status == 200
        assert (obj.content_type, obj.cache_control) == (headers["Content-Type"], headers["Cache-Control"]), obj.key

def test_a_second_deploy_uploads_nothing_and_still_invalidates(stack):
    outputs, s3, cloudfront = stack["outputs"], stack["s3"], stack["cloudfront"]
    deploy_web.deploy(outputs, s3, cloudfront, say=lambda _: None)

    again = deploy_web.deploy(outputs, s3, cloudfront, say=lambda _: None)

    assert again.uploaded == [] and again.deleted == []
    assert sorted(again.unchanged) == sorted(WEB_FILES + ["config.json"])
    invalidations = cloudfront.list_invalidations(DistributionId=outputs["WebDistributionId"])["InvalidationList"]
    assert invalidations["Quantity"] == 2


def test_a_file_whose_cache_header_changed_is_uploaded_again(stack):
    outputs, s3, cloudfront = stack["outputs"], stack["s3"], stack["cloudfront"]
    deploy_web.deploy(outputs, s3, cloudfront, say=lambda _: None)
    bucket = outputs["WebBucketName"]
    s3.copy_object(Bucket=bucket, Key="sw.js", CopySource={"Bucket": bucket, "Key": "sw.js"},
                   MetadataDirective="REPLACE", ContentType="text/javascript; charset=utf-8",
                   CacheControl="public, max-age=86400")

    again = deploy_web.deploy(outputs, s3, cloudfront, say=lambda _: None)

    assert again.uploaded == ["sw.js"]
    assert s3.head_object(Bucket=bucket, Key="sw.js")["CacheControl"] == "no-cache"


def test_the_command_reads_the_stack_deploys_and_prints_no_credential(stack, capsys):
    code = deploy_web.main(["--stack", STACK, "--region", REGION])

    out = capsys.readouterr()
    assert code == 0, out.err
    assert "uploaded" in out.out and stack["outputs"]["WebUrl"] in out.out
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in out.out + out.err


def test_a_stack_without_the_web_outputs_is_refused_before_anything_is_written(aws, capsys):
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(StackName="older", TemplateBody=json.dumps({
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}, "Outputs": {"WebBucketName": {"Value": {"Ref": "Bucket"}}}}))

    code = deploy_web.main(["--stack", "older", "--region", REGION])

    assert code == 2
    assert "WebDistributionId" in capsys.readouterr().err
    bucket = deploy_web.stack_outputs(cloudformation, "older")["WebBucketName"]
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_missing_stack_is_said_plainly(aws, capsys):
    assert deploy_web.main(["--stack", "no-such-stack", "--region", REGION]) == 2
    assert "no-such-stack" in capsys.readouterr().err


def test_a_file_of_a_type_the_local_api_does_not_serve_stops_the_deploy(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "notes.md").write_text("# not served")
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # hidden files are never deployed

    with pytest.raises(deploy_web.DeployError, match="notes.md"):
        deploy_web.web_objects({key: "x" for key in deploy_web.REQUIRED_OUTPUTS}, tmp_path)

"""template.yaml's web client: a private bucket behind CloudFront, the API's routes on the same origin, the local CSP.

Routing is checked the way CloudFront decides it (the first cache behaviour whose path pattern matches, else the
default one) for every route the Chalice app and booking_api/openapi.json have and every file of web/."""
from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from infra.local import template
from infra.local.web import WEB_ROOT, content_security_policy
from tests.conftest import ROOT

DOC = template.load()
RESOURCES = DOC["Resources"]
CONFIG = RESOURCES["WebDistribution"]["Properties"]["DistributionConfig"]
ORIGINS = {origin["Id"]: origin for origin in CONFIG["Origins"]}
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
# The 4xx/5xx answers CloudFront keeps for the error caching TTL (10 s unless told); it never keeps a 416.
CACHED_ERRORS = {400, 403, 404, 405, 414, 500, 501, 502, 503, 504}


def _behaviour(path: str) -> dict:
    """The cache behaviour CloudFront picks for a request path: the first pattern that matches, in order."""
    for behaviour in CONFIG.get("CacheBehaviors", []):
        if fnmatchcase(path, behaviour["PathPattern"]):
            return behaviour
    return CONFIG["DefaultCacheBehavior"]


def _sample(path: str) -> str:
    """A concrete request path for a route ({booking_key} → a value)."""
    return "/".join("x1" if part.startswith("{") else part for part in path.split("/"))


def _api_routes() -> set[tuple[str, str]]:
    from booking_api.app import app

    routes = {(method, path) for path, methods in app.routes.items() for method in methods}
    document = json.loads((ROOT / "booking_api" / "openapi.json").read_text())
    routes |= {(method.upper(), path) for path, item in document["paths"].items()
               for method in item if method in {"get", "post", "delete", "put", "patch"}}
    return routes


def _sub(value, **names) -> str:
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, replacement in names.items():
        text = text.replace("${" + name + "}", replacement)
    return text


def _att(value) -> str:
    """'Resource.Attribute' of a !GetAtt, written either way."""
    target = value["Fn::GetAtt"]
    return target if isinstance(target, str) else ".".join(target)


def test_the_bucket_is_private_encrypted_versioned_and_owned_by_the_account():
    props = RESOURCES["WebBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    # SSE-S3: deploy_web compares ETags with the files' MD5, which holds for SSE-S3 and not for SSE-KMS.
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "WebsiteConfiguration" not in props, "a website endpoint is public by design"


def test_the_bucket_policy_lets_only_this_distribution_read_and_refuses_plain_http():
    policy = RESOURCES["WebBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "WebBucket"}
    statements = policy["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert source.endswith(":distribution/${WebDistribution}")
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resources = {_att(r) if "Fn::GetAtt" in r else _sub(r) for r in deny["Resource"]}
    assert resources == {"WebBucket.Arn", "${WebBucket.Arn}/*"}


def test_cloudfront_reads_the_bucket_through_origin_access_control():
    web = ORIGINS[CONFIG["DefaultCacheBehavior"]["TargetOriginId"]]
    assert _att(web["DomainName"]) == "WebBucket.RegionalDomainName"
    assert _att(web["OriginAccessControlId"]) == "WebOriginAccessControl.Id"
    assert web["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # no legacy OAI
    oac = RESOURCES["WebOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == \
        ("s3", "always", "sigv4")


def test_the_api_origin_is_the_stage_over_https():
    (api,) = [o for o in ORIGINS.values() if "CustomOriginConfig" in o]
    assert _sub(api["DomainName"]) == "${BookingApi}.execute-api.${AWS::Region}.amazonaws.com"
    assert _sub(api["OriginPath"]) == "/${Stage}"
    assert api["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    # Longer than the API function's timeout, so CloudFront never answers 504 for a booking still deciding.
    timeout = RESOURCES["BookingApiFunction"]["Properties"]["Timeout"]
    assert api["CustomOriginConfig"]["OriginReadTimeout"] > timeout


@pytest.mark.parametrize("method, path", sorted(_api_routes()))
def test_every_api_route_reaches_the_stage_uncached_with_the_viewers_headers(method, path):
    (api_id,) = [name for name, o in ORIGINS.items() if "CustomOriginConfig" in o]
    behaviour = _behaviour(_sample(path))

    assert behaviour["TargetOriginId"] == api_id, f"{method} {path} would be looked up in the bucket"
    assert behaviour["CachePolicyId"] == CACHING_DISABLED
    # Authorization, Idempotency-Key and the query string reach the API; Host stays the API's own.
    assert behaviour["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert method in behaviour["AllowedMethods"]
    assert behaviour["ViewerProtocolPolicy"] in ("https-only", "redirect-to-https")


@pytest.mark.parametrize("key", sorted({p.relative_to(WEB_ROOT).as_posix() for p in WEB_ROOT.rglob("*")
                                        if p.is_file()} | {"config.json", ""}))
def test_every_file_of_the_web_client_comes_from_the_bucket_over_https(key):
    behaviour = _behaviour("/" + key)

    assert behaviour is CONFIG["DefaultCacheBehavior"], f"/{key} would be sent to the API"
    assert ORIGINS[behaviour["TargetOriginId"]].get("S3OriginConfig") is not None
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https"
    assert CONFIG["DefaultRootObject"] == "index.html"


def test_the_page_gets_the_content_security_policy_the_local_api_sets():
    headers = RESOURCES["WebResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    security = headers["SecurityHeadersConfig"]
    region = "eu-west-1"
    cognito = _sub(DOC["Outputs"]["CognitoEndpoint"]["Value"], **{"AWS::Region": region})
    # The API is on the page's own origin, which 'self' covers (locally its origin is named as well, and is the
    # page's own there too): the same policy as infra/local/web.py's, with the region's Cognito endpoint.
    expected = content_security_policy({"apiUrl": "", "cognitoEndpoint": cognito})

    csp = _sub(security["ContentSecurityPolicy"]["ContentSecurityPolicy"], **{"AWS::Region": region})
    assert csp == expected
    assert f"connect-src 'self' https://cognito-idp.{region}.amazonaws.com;" in csp
    assert security["ContentTypeOptions"]["Override"] is True
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert CONFIG["DefaultCacheBehavior"]["ResponseHeadersPolicyId"] == {"Ref": "WebResponseHeadersPolicy"}


def test_no_error_answer_is_kept_at_the_edge():
    kept = {r["ErrorCode"]: r.get("ErrorCachingMinTTL") for r in CONFIG["CustomErrorResponses"]}
    assert all(kept.get(code) == 0 for code in CACHED_ERRORS), kept
    assert not any("ResponsePagePath" in r for r in CONFIG["CustomErrorResponses"]), \
        "an error page would replace the API's JSON errors"


def test_the_outputs_name_the_app_the_bucket_the_distribution_and_all_config_json_needs():
    outputs = DOC["Outputs"]
    assert _sub(outputs["WebUrl"]["Value"]) == "https://${WebDistribution.DomainName}"
    assert outputs["WebBucketName"]["Value"] == {"Ref": "WebBucket"}
    assert outputs["WebDistributionId"]["Value"] == {"Ref": "WebDistribution"}
    # config.json's values (tests/unit/test_deploy_web.py: infra.deploy_web reads exactly these).
    assert outputs["Region"]["Value"] == {"Ref": "AWS::Region"}
    assert {"UserPoolId", "UserPoolClientId", "CognitoEndpoint"} <= set(outputs)


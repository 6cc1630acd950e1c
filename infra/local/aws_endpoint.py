"""The local stack's AWS: moto's server mode on one port, with the template's Cognito user pool in it.

    python -m infra.local.aws_endpoint --port 4566 [--template template.yaml] [--ready-file F] [--end-with PID]

At start it creates the user pool (email as the user name, the template's password policy, a `custom:user_id`
attribute), the web client's app client (no secret; USER_PASSWORD_AUTH, SRP and refresh tokens) and the demo users
user1@example.com … user24@example.com (password DEMO_PASSWORD), each mapped to its MySQL id, and writes
{"endpoint", "region", "userPoolId", "userPoolClientId"} to the ready file.

Cognito runs a pool's PostConfirmation trigger inside ConfirmSignUp, before answering; moto does not run triggers,
so this process does: a ConfirmSignUp / AdminConfirmSignUp that moto accepted invokes the template's function whose
event is `Type: Cognito, Trigger: PostConfirmation` with Cognito's trigger event, and only then answers the client
(an error from the function is answered as Cognito does, UnexpectedLambdaException). Other AWS APIs the stack may
use locally (SES, Secrets Manager, S3) are moto's, on the same endpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path

from booking_core import config, logs
from infra.local import template
from infra.local.lambda_context import LocalContext
from infra.local.lifetime import end_with_parent, stop_event_on_signals

log = logging.getLogger("aws_endpoint")

POOL_NAME = "booking-local"
CLIENT_NAME = "web"
DEFAULT_DEMO_PASSWORD = "Booking-demo-1"
CONFIRM_TARGETS = ("AWSCognitoIdentityProviderService.ConfirmSignUp",
                   "AWSCognitoIdentityProviderService.AdminConfirmSignUp")


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD


def post_confirmation_function(functions: dict[str, template.Function]) -> template.Function | None:
    """The function the template attaches to the pool's PostConfirmation trigger."""
    for function in functions.values():
        for event in function.events:
            if event.type == "Cognito" and event.properties.get("Trigger") in ("PostConfirmation",
                                                                                ["PostConfirmation"]):
                return function
    return None


def password_policy(template_doc: dict) -> dict:
    """The template's user pool password policy (moto enforces it on SignUp as Cognito does)."""
    for resource in (template_doc.get("Resources") or {}).values():
        if resource.get("Type") == "AWS::Cognito::UserPool":
            return ((resource.get("Properties") or {}).get("Policies") or {}).get("PasswordPolicy") or {}
    return {"MinimumLength": 8}


def cognito_client(endpoint: str):
    import boto3

    return boto3.client("cognito-idp", region_name=config.aws_region(), endpoint_url=endpoint,
                        aws_access_key_id="local", aws_secret_access_key="local")


def create_pool(endpoint: str, policy: dict, demo_users: list[tuple[int, str, str]]) -> dict[str, str]:
    """The pool, its web client and the demo users (confirmed, permanent demo password)."""
    idp = cognito_client(endpoint)
    pool = idp.create_user_pool(
        PoolName=POOL_NAME, UsernameAttributes=["email"], AutoVerifiedAttributes=["email"],
        Schema=[{"Name": "user_id", "AttributeDataType": "String", "Mutable": True},
                {"Name": "name", "AttributeDataType": "String", "Mutable": True}],
        Policies={"PasswordPolicy": {k: v for k, v in policy.items() if isinstance(v, bool | int)}},
    )["UserPool"]
    client = idp.create_user_pool_client(
        UserPoolId=pool["Id"], ClientName=CLIENT_NAME, GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    password = demo_password()
    for user_id, email, name in demo_users:
        idp.admin_create_user(UserPoolId=pool["Id"], Username=email, MessageAction="SUPPRESS", UserAttributes=[
            {"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"},
            {"Name": "name", "Value": name}, {"Name": "custom:user_id", "Value": str(user_id)}])
        idp.admin_set_user_password(UserPoolId=pool["Id"], Username=email, Password=password, Permanent=True)
    return {"endpoint": endpoint, "region": config.aws_region(), "userPoolId": pool["Id"],
            "userPoolClientId": client["ClientId"]}


class PostConfirmationTrigger:
    """WSGI middleware over moto: runs the PostConfirmation function inside a successful confirmation."""

    def __init__(self, app, endpoint: str, function: template.Function | None):
        self.app = app
        self.endpoint = endpoint
        self.function = function
        self.pool: dict[str, str] = {}
        self._handler = None
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if self.function is None or target not in CONFIRM_TARGETS or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None

        answer = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            try:
                self._run_trigger(json.loads(body or b"{}"))
            except Exception as exc:  # noqa: BLE001 - answered to the client as Cognito does
                log.exception("PostConfirmation trigger failed")
                error = json.dumps({"__type": "UnexpectedLambdaException",
                                    "message": f"PostConfirmation failed with error {type(exc).__name__}."}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                                   ("Content-Length", str(len(error)))])
                return [error]
        start_response(captured["status"], captured["headers"])
        return [answer]

    def _run_trigger(self, request: dict) -> None:
        pool_id = request.get("UserPoolId") or self.pool["userPoolId"]
        user = cognito_client(self.endpoint).admin_get_user(UserPoolId=pool_id, Username=request["Username"])
        attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
        attributes["cognito:user_status"] = "CONFIRMED"
        event = {
            "version": "1", "region": config.aws_region(), "userPoolId": pool_id, "userName": user["Username"],
            "callerContext": {"awsSdkVersion": "local", "clientId": request.get("ClientId", "")},
            "triggerSource": ("PostConfirmation_AdminConfirmSignUp" if "ClientId" not in request
                              else "PostConfirmation_ConfirmSignUp"),
            "request": {"userAttributes": attributes}, "response": {},
        }
        with self._lock:
            if self._handler is None:
                assert self.function is not None
                self._handler = self.function.load_handler()
        self._handler(event, LocalContext(self.function.logical_id, self.function.timeout))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--template", default=str(template.TEMPLATE))
    parser.add_argument("--ready-file")
    parser.add_argument("--end-with", type=int, help="end when this process (the one starting it) dies")
    args = parser.parse_args(argv)
    if args.end_with:
        end_with_parent(args.end_with)
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from infra.demo_data import demo_users

    logs.setup("aws_endpoint")
    endpoint = f"http://127.0.0.1:{args.port}"
    functions = template.functions(Path(args.template))
    trigger_function = post_confirmation_function(functions)
    # The trigger calls Cognito back (to store the user id): on this endpoint, with local credentials.
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
    # Ids derived from the pool's settings, not random: the same on every start, so a sample event can name the
    # pool (infra/events/accounts_fn/) and a token outlives nothing but the stack's own restart.
    os.environ.setdefault("MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY", "HASH")
    os.environ.setdefault("MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY", "HASH")
    if trigger_function is not None:
        trigger_function.apply_environment()  # the trigger runs in this process, with its own environment
    app = PostConfirmationTrigger(DomainDispatcherApplication(create_backend_app), endpoint, trigger_function)
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="moto").start()
    app.pool = create_pool(endpoint, password_policy(template.load(Path(args.template))), demo_users())
    if args.ready_file:  # written whole, then renamed: the stack never reads half of it
        partial = Path(args.ready_file + ".part")
        partial.write_text(json.dumps(app.pool))
        partial.rename(args.ready_file)
    log.info("local AWS endpoint ready", extra={"endpoint": endpoint, "user_pool_id": app.pool["userPoolId"]})
    stop = stop_event_on_signals()
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()

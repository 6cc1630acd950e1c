"""`make token USER=user3@example.com [PASSWORD=...]`: an ID token for curl, on a line of its own.

Signs in against the Cognito endpoint of the stack the environment names (its GET /config.json says where), with
USER_PASSWORD_AUTH, as the web client does. The password defaults to the demo users' (DEMO_PASSWORD).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from infra.local.aws_endpoint import demo_password
from infra.local.stack import api_url

DEFAULT_USER = "user1@example.com"


def web_config(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/config.json", timeout=5) as response:
        return json.loads(response.read())


def initiate_auth(cognito_endpoint: str, client_id: str, username: str, password: str) -> dict:
    """Cognito's InitiateAuth (USER_PASSWORD_AUTH): the AuthenticationResult (IdToken, RefreshToken, ...)."""
    body = json.dumps({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client_id,
                       "AuthParameters": {"USERNAME": username, "PASSWORD": password}}).encode()
    request = urllib.request.Request(cognito_endpoint, data=body, method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["AuthenticationResult"]
    except urllib.error.HTTPError as exc:
        reason = json.loads(exc.read() or b"{}").get("message") or exc.reason
        raise SystemExit(f"token: sign-in refused for {username}: {reason}") from None


def id_token(username: str, password: str | None = None, base_url: str | None = None) -> str:
    settings = web_config(base_url or api_url())
    if not settings.get("cognitoEndpoint"):
        raise SystemExit("token: this stack has no sign-in configured (config.json names no Cognito endpoint)")
    result = initiate_auth(settings["cognitoEndpoint"], settings["userPoolClientId"], username,
                           password or demo_password())
    return str(result["IdToken"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user", nargs="?", default="")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)
    # `make token` without USER= passes the login name of the shell ($USER): not an address, so the first demo user.
    user = args.user if "@" in args.user else DEFAULT_USER
    try:
        print(id_token(user, args.password or None))
    except OSError as exc:
        print(f"token: the stack at {api_url()} does not answer ({exc}); start it with make up", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

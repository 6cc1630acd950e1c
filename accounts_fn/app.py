"""accounts_fn: Cognito's PostConfirmation trigger. A user who confirmed their sign-up gets their row in MySQL, and
its id is stored on the Cognito user (`custom:user_id`), so every token they get names the MySQL user.

Event (Cognito): {"triggerSource": "PostConfirmation_ConfirmSignUp", "userPoolId", "userName",
                  "request": {"userAttributes": {"sub", "email", "name"?, ...}}, "response": {}}
Returns the event, as Cognito requires; raising makes Cognito answer the confirmation with an error (the user can
sign in, but gets no user id until a later confirmation or an operator runs the trigger again: it is idempotent).
"""
from booking_core import bootstrap, logs
from booking_core.services.accounts import register_confirmed_user

logs.setup("accounts_fn")


@logs.with_lambda_context
def handler(event: dict, context: object) -> dict:
    attributes = event["request"]["userAttributes"]
    register_confirmed_user(
        email=attributes.get("email", ""), name=attributes.get("name", ""),
        user_pool_id=event["userPoolId"], username=event["userName"],
        accounts=bootstrap.user_accounts(), directory=bootstrap.identity_directory(),
    )
    return event

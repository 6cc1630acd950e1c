"""Amazon Cognito user pools (boto3 `cognito-idp`): stores the MySQL user id on a Cognito user."""
from __future__ import annotations

import threading
from typing import Any

from booking_core import config

USER_ID_ATTRIBUTE = "custom:user_id"


class CognitoIdentityDirectory:
    def __init__(self, client: Any = None):
        self._client = client
        self._lock = threading.Lock()

    def _idp(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client("cognito-idp", region_name=config.aws_region(), config=Config(
                        connect_timeout=3, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}))
        return self._client

    def link_user(self, user_pool_id: str, username: str, user_id: int) -> None:
        self._idp().admin_update_user_attributes(
            UserPoolId=user_pool_id, Username=username,
            UserAttributes=[{"Name": USER_ID_ATTRIBUTE, "Value": str(user_id)}])

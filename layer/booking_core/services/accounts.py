"""Sign-up: a confirmed Cognito user becomes a MySQL user, and the token's `custom:user_id` names that row."""
from __future__ import annotations

import logging

from booking_core.domain.model import ValidationError
from booking_core.ports import IdentityDirectory, UserAccounts

log = logging.getLogger(__name__)

MAX_EMAIL_LENGTH = 255


def normalised_email(email: str) -> str:
    """The address as the users table keeps it (one row per address, whatever its case)."""
    address = email.strip().lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or len(address) > MAX_EMAIL_LENGTH or any(c.isspace() for c in address):
        raise ValidationError({"email": "must be an email address"})
    return address


def register_confirmed_user(email: str, name: str, user_pool_id: str, username: str, accounts: UserAccounts,
                            directory: IdentityDirectory) -> int:
    """The user's MySQL id (created on first confirmation; an address already known keeps its row), stored on the
    identity as well. Idempotent: a trigger run twice links the same row."""
    user_id = accounts.ensure_user(normalised_email(email), name.strip()[:255])
    directory.link_user(user_pool_id, username, user_id)
    log.info("user registered", extra={"user_id": user_id})  # never the address: no email in a log line
    return user_id

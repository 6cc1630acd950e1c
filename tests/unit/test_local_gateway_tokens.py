"""The local gateway's token check (infra/local/gateway.py TokenVerifier): a valid token's claims are cached as
API Gateway caches a Cognito authorizer's result, never past the token's own expiry."""
from __future__ import annotations

import time
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.local.gateway import CognitoSettings, InvalidToken, TokenVerifier

COGNITO = CognitoSettings("http://127.0.0.1:1", "us-east-1_pool", "client-1", "us-east-1")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Keys:
    """The JWKS client: one key; counts how often a token had to be checked against it."""

    def __init__(self):
        self.checks = 0

    def get_signing_key_from_jwt(self, token):
        self.checks += 1
        return SimpleNamespace(key=KEY.public_key())


class _Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def _token(**overrides) -> str:
    claims = {"sub": "s-1", "custom:user_id": "7", "aud": COGNITO.client_id, "iss": COGNITO.issuer,
              "token_use": "id", "exp": int(time.time()) + 3600, **overrides}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture()
def verifier():
    clock = _Clock()
    checker = TokenVerifier(COGNITO, clock=clock)
    checker._jwks = _Keys()  # no JWKS endpoint in a unit test
    return checker, checker._jwks, clock


def test_a_valid_token_is_checked_once_within_the_cache_ttl(verifier):
    checker, keys, clock = verifier
    token = _token()
    first = checker.claims(f"Bearer {token}")
    clock.now += TokenVerifier.CACHE_TTL_S - 1
    again = checker.claims(f"Bearer {token}")
    assert first == again and first["custom:user_id"] == "7" and keys.checks == 1


def test_after_the_ttl_the_token_is_checked_again(verifier):
    checker, keys, clock = verifier
    token = _token()
    checker.claims(f"Bearer {token}")
    clock.now += TokenVerifier.CACHE_TTL_S + 1
    checker.claims(f"Bearer {token}")
    assert keys.checks == 2


def test_a_cached_token_is_refused_once_it_expires(verifier):
    checker, _, clock = verifier
    token = _token(exp=int(clock.now) + 60)
    checker.claims(f"Bearer {token}")
    clock.now += 60 + TokenVerifier.LEEWAY_S + 1
    with pytest.raises(InvalidToken, match="expired"):
        checker.claims(f"Bearer {token}")


def test_a_refused_token_is_not_cached(verifier):
    checker, keys, _ = verifier
    token = _token(aud="another-client")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            checker.claims(f"Bearer {token}")
    assert keys.checks == 2


def test_a_caller_changing_the_claims_it_got_does_not_change_the_cached_ones(verifier):
    checker, _, _ = verifier
    token = _token()
    checker.claims(f"Bearer {token}")["custom:user_id"] = "8"
    assert checker.claims(f"Bearer {token}")["custom:user_id"] == "7"


def test_the_cache_is_bounded(verifier, monkeypatch):
    checker, _, clock = verifier
    monkeypatch.setattr(TokenVerifier, "CACHE_MAX_TOKENS", 3)
    for n in range(10):
        checker.claims(f"Bearer {_token(sub=f's-{n}')}")
    assert len(checker._cache) <= 3

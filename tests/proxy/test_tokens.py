"""Sandbox tokens: what the hub mints and the key proxy checks."""

from __future__ import annotations

import base64
import json

import pytest

from claudehub.contract.tokens import InvalidToken, mint_token, verify_token

SECRET = b"shared-secret"


def test_round_trip_names_user_server_and_times() -> None:
    tok = mint_token(SECRET, "alice", "lab", ttl=60, now=1000.0)
    claims = verify_token(SECRET, tok, now=1030.0)
    assert (claims.user, claims.server, claims.issued_at, claims.expires_at) == (
        "alice",
        "lab",
        1000.0,
        1060.0,
    )
    assert tok.startswith("chs1.") and tok.count(".") == 2


def test_no_ttl_never_expires_by_itself() -> None:
    tok = mint_token(SECRET, "bob", now=0.0)
    assert verify_token(SECRET, tok, now=10**9).expires_at is None


def test_expired_token_is_rejected() -> None:
    tok = mint_token(SECRET, "alice", ttl=60, now=1000.0)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, tok, now=1060.0)


def test_other_secret_is_rejected() -> None:
    tok = mint_token(b"another-secret", "alice", ttl=60)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(SECRET, tok)


def test_forged_claims_are_rejected() -> None:
    tok = mint_token(SECRET, "alice", ttl=60)
    prefix, _, sig = tok.split(".")
    forged = (
        base64.urlsafe_b64encode(json.dumps({"sub": "admin", "srv": "", "iat": 1}).encode())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(InvalidToken):
        verify_token(SECRET, f"{prefix}.{forged}.{sig}")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sk-ant-api03-something",
        "chs1.a",
        "chs1.a.b.c",
        "chs2.e30.AAAA",
        "chs1.!!!.???",
        "x" * 5000,
        "chs1.é.x",
    ],
)
def test_malformed_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SECRET, bad)


def test_reason_never_contains_the_token() -> None:
    tok = mint_token(SECRET, "alice", ttl=1, now=0.0)
    with pytest.raises(InvalidToken) as info:
        verify_token(SECRET, tok, now=5.0)
    assert tok not in str(info.value)
    assert tok.split(".")[2] not in info.value.reason


def test_empty_secret_or_user_cannot_mint() -> None:
    with pytest.raises(ValueError):
        mint_token(b"", "alice")
    with pytest.raises(ValueError):
        mint_token(SECRET, "")
    with pytest.raises(InvalidToken):
        verify_token(b"", mint_token(SECRET, "alice"))


def test_an_author_sessions_token_names_its_kind_and_a_learners_none() -> None:
    author = mint_token(SECRET, "ines", kind="author", now=0.0)
    assert verify_token(SECRET, author, now=1.0).kind == "author"
    learner = mint_token(SECRET, "lea", now=0.0)
    assert verify_token(SECRET, learner, now=1.0).kind is None
    claims = json.loads(base64.urlsafe_b64decode(learner.split(".")[1] + "=="))
    assert "knd" not in claims  # a learner's token is what it was before kinds existed
    with pytest.raises(ValueError, match="unknown session kind 'admin'"):
        mint_token(SECRET, "x", kind="admin")


def test_a_token_signed_with_an_unknown_kind_is_refused() -> None:
    import hashlib
    import hmac

    body = base64.urlsafe_b64encode(
        json.dumps({"sub": "x", "srv": "", "iat": 0, "knd": "root"}).encode()
    ).rstrip(b"=")
    signed = b"chs1." + body
    sig = base64.urlsafe_b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(InvalidToken, match="malformed sandbox token claims"):
        verify_token(SECRET, (signed + b"." + sig).decode(), now=1.0)

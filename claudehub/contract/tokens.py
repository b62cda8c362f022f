"""Sandbox tokens: what a user's sandbox holds instead of the real Anthropic key.

A token names the hub user (and server) it was minted for, when it was issued and when it
expires, and carries an HMAC-SHA256 over those claims with a secret shared by the hub (which
mints one at every spawn) and the key proxy (which verifies it on every request without a
network round trip). Format::

    chs1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "chs1.<claims part>"))>

Claims: ``sub`` (the user), ``srv`` (the server), ``iat``, optional ``exp`` and optional
``knd``, the session's kind: absent for a learner's session, ``"author"`` (:data:`AUTHOR`) for
an instructor's author session, whose usage the key proxy meters and limits separately.

The token is a bearer credential: never log it. :class:`InvalidToken` messages never contain it.
The secret reaches both sides the same way: a value (``CLAUDEHUB_TOKEN_SECRET``) or a file
(``CLAUDEHUB_TOKEN_SECRET_FILE``, a mounted Secret, which wins), read by
:func:`load_token_secret`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "chs1"
_MAX_TOKEN_LENGTH = 4096

#: The ``knd`` claim of an author session's token (docs/authoring.md).
AUTHOR = "author"
#: The session kinds a token may name; ``None`` (no claim) is a learner's session.
KINDS = frozenset({AUTHOR})


class InvalidToken(Exception):
    """The token is malformed, forged, or expired. ``reason`` is safe to show to the client;
    ``forged`` is true when it is well formed but its signature does not match (the audit log
    records those)."""

    def __init__(self, reason: str, *, forged: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.forged = forged


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token says."""

    user: str
    server: str
    issued_at: float
    expires_at: float | None
    #: the session's kind: ``None`` for a learner's, ``"author"`` for an author session's
    kind: str | None = None


def read_secret_file(path: str) -> str:
    """A secret from a file (surrounding whitespace, e.g. a trailing newline, removed)."""
    return Path(path).read_text(encoding="utf-8").strip()


def load_token_secret(secret: str | bytes = b"", secret_file: str = "") -> bytes:
    """The token secret: the file's content when ``secret_file`` is set, else ``secret``.

    Read again at every call, so a rotated Secret takes effect without a restart. Raises
    OSError (or UnicodeDecodeError) when the file cannot be read.
    """
    if secret_file:
        return read_secret_file(secret_file).encode()
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def _sign(secret: bytes, signed_part: str) -> str:
    return _b64encode(hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest())


def mint_token(
    secret: bytes,
    user: str,
    server: str = "",
    ttl: float | None = None,
    now: float | None = None,
    kind: str | None = None,
) -> str:
    """Mint a sandbox token for ``user``'s ``server`` ("" is the default server).

    ``ttl`` seconds from now the token expires; ``None`` means it lives as long as the user's
    server (the key proxy rejects it once the hub reports the server stopped). ``kind`` is
    the session's kind (:data:`KINDS`; ``None``, a learner's, writes no ``knd`` claim).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown session kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    if not secret:
        raise ValueError("a non-empty token secret is required")
    if not user:
        raise ValueError("a user name is required")
    issued = float(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": user, "srv": server, "iat": round(issued, 3)}
    if ttl is not None:
        claims["exp"] = round(issued + float(ttl), 3)
    if kind is not None:
        claims["knd"] = kind
    body = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signed_part = f"{PREFIX}.{body}"
    return f"{signed_part}.{_sign(secret, signed_part)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> TokenClaims:
    """Check ``token``'s signature and expiry and return its claims.

    Raises :class:`InvalidToken` (with a reason fit for an error message) when the token is
    malformed, was not signed with ``secret``, or has expired.
    """
    if not secret:
        raise InvalidToken("the key proxy has no token secret configured")
    if not token or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidToken("malformed sandbox token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidToken("malformed sandbox token")
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signed_part), parts[2]):
        raise InvalidToken("sandbox token signature does not match", forged=True)
    try:
        raw = json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error) as e:  # signed but unreadable: a minting bug
        raise InvalidToken("malformed sandbox token claims") from e
    if not isinstance(raw, dict):
        raise InvalidToken("malformed sandbox token claims")
    user, server, iat, exp = raw.get("sub"), raw.get("srv", ""), raw.get("iat"), raw.get("exp")
    kind = raw.get("knd")
    if (
        not isinstance(user, str)
        or not user
        or not isinstance(server, str)
        or not isinstance(iat, int | float)
        or not (exp is None or isinstance(exp, int | float))
        or not (kind is None or kind in KINDS)
    ):
        raise InvalidToken("malformed sandbox token claims")
    current = time.time() if now is None else now
    if exp is not None and current >= exp:
        raise InvalidToken("sandbox token has expired")
    return TokenClaims(
        user=user,
        server=server,
        issued_at=float(iat),
        expires_at=None if exp is None else float(exp),
        kind=kind,
    )

"""The secret tokens in F&O's events URLs: the current one, and the previous one during a rotation's grace period.

Rotating must not cut F&O off: F&O reads the URL from Key Vault, and an admin updates Key Vault some time after
rotating here. So `rotate` keeps the replaced token as "<secret>.previous" (JSON: the token and when it was
replaced); the service accepts it until rotated_at + environments[].event_token_grace, or until `revoke_previous`
deletes it. A second rotation within the grace period replaces the previous token: only the last two are valid.

Both are encrypted secrets in the store (connector/secrets.py); this module never prints or logs a token.
"""

from __future__ import annotations

import json
import secrets as pysecrets
from dataclasses import dataclass

from connector.secrets import SecretBox, SecretNotFound

PREVIOUS_SUFFIX = ".previous"


@dataclass(frozen=True)
class EndpointTokens:
    current: str  # "" when none was created yet
    previous: str = ""  # "" when there is none
    rotated_at: float = 0.0  # when `previous` was replaced by `current`

    def previous_valid_until(self, grace: float) -> float:
        return self.rotated_at + grace if self.previous else 0.0


def previous_name(secret_name: str) -> str:
    return secret_name + PREVIOUS_SUFFIX


async def _get(box: SecretBox, name: str) -> str:
    try:
        return (await box.get(name)).reveal()
    except SecretNotFound:
        return ""


async def read_tokens(box: SecretBox, secret_name: str) -> EndpointTokens:
    current = await _get(box, secret_name)
    raw = await _get(box, previous_name(secret_name))
    if not raw:
        return EndpointTokens(current)
    try:
        previous = json.loads(raw)
        return EndpointTokens(current, str(previous["token"]), float(previous["rotated_at"]))
    except (ValueError, KeyError, TypeError):  # not ours: accept no previous token rather than a malformed one
        return EndpointTokens(current)


def new_token() -> str:
    return pysecrets.token_urlsafe(32)


async def ensure_token(box: SecretBox, secret_name: str) -> tuple[str, bool]:
    """The current token, created if there is none. Returns (token, created)."""
    current = await _get(box, secret_name)
    if current:
        return current, False
    token = new_token()
    await box.put(secret_name, token)
    return token, True


async def rotate(box: SecretBox, secret_name: str, *, now: float) -> tuple[str, bool]:
    """A new current token; the replaced one becomes the previous (valid for the grace period). Returns the new
    token and whether there was one to replace.

    The previous is written first: if this stops half-way, the old token is both current and previous (harmless)."""
    current = await _get(box, secret_name)
    if current:
        await box.put(previous_name(secret_name), json.dumps({"token": current, "rotated_at": now}))
    token = new_token()
    await box.put(secret_name, token)
    return token, bool(current)


async def revoke_previous(box: SecretBox, secret_name: str) -> bool:
    """End the grace period now. Returns False if there was no previous token."""
    try:
        await box.delete(previous_name(secret_name))
    except SecretNotFound:
        return False
    return True

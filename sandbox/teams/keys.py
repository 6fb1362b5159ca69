"""The Bot Framework channel's signing keys: OpenID metadata, JWKS, and the JWT on every inbound activity.

Knows JOSE and the Bot Framework token rules (teams.md §1.6), nothing about activities or HTTP routes. Three keys
live for the process: the channel key (published, endorsed for `msteams`), a published key endorsed for other
channels only, and an unpublished key (its kid is unknown to the bot). Defects exist so tests can prove the bot
refuses bad tokens.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://api.botframework.com"
CHANNEL_KID = "sandbox-msteams-1"
UNENDORSED_KID = "sandbox-unendorsed-1"
UNKNOWN_KID = "sandbox-unpublished-1"

# What a test can ask the channel to get wrong on an inbound activity.
DEFECTS = ("no_token", "wrong_audience", "wrong_serviceurl", "expired", "unendorsed_key", "unknown_kid",
           "bad_signature")


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class ChannelKeys:
    """Signing keys of the sandbox channel. Build once per process (key generation costs ~0.1 s each)."""

    channel: rsa.RSAPrivateKey = field(default_factory=_new_key)
    unendorsed: rsa.RSAPrivateKey = field(default_factory=_new_key)
    unpublished: rsa.RSAPrivateKey = field(default_factory=_new_key)
    wall_clock: Callable[[], float] = time.time

    def jwks(self) -> dict:
        """`GET /v1/keys`: the channel key endorsed for msteams, and a second key endorsed for webchat only.

        The second key's list must not be empty: botbuilder 4.17 skips the endorsement check for a key whose
        `endorsements` is empty (jwt_token_extractor: `if key_id and metadata.endorsements:`).
        """
        return {"keys": [self._jwk(self.channel, CHANNEL_KID, ["msteams"]),
                         self._jwk(self.unendorsed, UNENDORSED_KID, ["webchat", "directline"])]}

    @staticmethod
    def _jwk(key: rsa.RSAPrivateKey, kid: str, endorsements: list[str]) -> dict:
        pub = key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": _b64(pub.n), "e": _b64(pub.e),
                "endorsements": endorsements}

    @staticmethod
    def openid_configuration(base_url: str) -> dict:
        """`GET /v1/.well-known/openidconfiguration` as login.botframework.com serves it (trimmed)."""
        return {"issuer": ISSUER,
                "authorization_endpoint": f"{base_url}/v1/authorize",
                "jwks_uri": f"{base_url}/v1/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"]}

    def token(self, *, audience: str, service_url: str, defect: str | None = None, lifetime: int = 3600) -> str | None:
        """A channel→bot JWT (RS256) for one activity; `defect` spoils exactly one property of it.

        Returns None for defect "no_token" (the request then carries no Authorization header).
        """
        if defect is not None and defect not in DEFECTS:
            raise ValueError(f"unknown defect {defect!r}; one of {DEFECTS}")
        if defect == "no_token":
            return None
        now = int(self.wall_clock())
        claims = {"iss": ISSUER, "aud": audience, "serviceurl": service_url,
                  "nbf": now - 300, "iat": now - 300, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        key, kid = self.channel, CHANNEL_KID
        if defect == "wrong_audience":
            claims["aud"] = str(uuid.uuid4())
        elif defect == "wrong_serviceurl":
            claims["serviceurl"] = "https://smba.trafficmanager.net/elsewhere/"
        elif defect == "expired":
            # well past botbuilder's 5-minute clock skew
            claims.update(nbf=now - 7200, iat=now - 7200, exp=now - 3600)
        elif defect == "unendorsed_key":
            key, kid = self.unendorsed, UNENDORSED_KID
        elif defect == "unknown_kid":
            key, kid = self.unpublished, UNKNOWN_KID
        elif defect == "bad_signature":
            key = self.unpublished  # published kid, wrong key: the signature does not verify
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "x5t": kid})

"""As whom a decision is made in F&O (`[approvals] act_as`): the sign-in gate of a press.

"service": nothing to do, the decision job uses the app-only token (today's behaviour).
"approver": an Action.Execute press must carry a usable sign-in. Without one the press is answered with the
Universal Actions loginRequest (Teams signs the user in silently and presses again with `authentication.token`).
The token is checked (bot.UserTokenValidator: signature, issuer, tenant, audience = the app, `access_as_user`,
`oid` = the presser) and exchanged on-behalf-of for the environment's F&O scope (connector.tokens.OnBehalfOf,
memory only); only then may the press win the approval. Consent missing, MFA/Conditional Access, a guest account,
a legacy Action.Submit or a manual-sign-in code (we use no Bot Framework token service to redeem it) end the press
with a message only the presser sees and an audit entry.
"approver-or-service": the same, but where the approver cannot be signed in the decision falls back to the
service user, and the reason goes into the audit and F&O's comment.

Why no Bot Framework token service: the SSO token is validated here and exchanged with MSAL directly, so there is no
OAuth connection to configure and no third party holding user tokens (sso-obo.md §2 design B). The price: the manual
sign-in's `state` code cannot be redeemed, so clients that cannot do SSO fall back (or are told to use one that can).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot import InvokeFailure, LoginRequest, SsoUser, UserTokenRejected
from connector.approvals.config import ApprovalSettings
from connector.tokens import ConsentRequired, InteractionRequired, TokenError, TokenFailure, TokenUnavailable

log = logging.getLogger(__name__)

APPROVER, SERVICE = "approver", "service"


class TokenValidator(Protocol):
    async def validate(self, token: str, *, presser_object_id: str | None) -> SsoUser: ...


class UserTokenExchange(Protocol):
    def has_token(self, user_object_id: str, scope: str) -> bool: ...

    async def exchange(self, user_object_id: str, assertion: str, assertion_expires_at: float, scope: str) -> str: ...


@dataclass(frozen=True)
class Gate:
    """What the sign-in gate decided for one press.

    proceed: the press may try to win the approval, deciding `act_as` ("approver" | "service").
    answer: otherwise, what the presser gets (a LoginRequest, an InvokeFailure or a text only they see).
    fallback: why an approver-or-service press falls back to the service user (audit and comment).
    audit: what to record when the press is stopped here.
    """

    proceed: bool
    act_as: str = SERVICE
    answer: LoginRequest | InvokeFailure | str | None = None
    fallback: str | None = None
    audit: str | None = None


CONSENT_TEXT = ("Dynamics 365 has not been granted to the connector for your account yet (consent missing, "
                "AADSTS65001). Ask your Microsoft Entra administrator to grant admin consent to the connector's app "
                "for 'Microsoft Dynamics ERP' (README: 'Deciding as the approver'), then press again.")
MFA_TEXT = ("Your organisation requires an extra sign-in check (multi-factor authentication or a Conditional Access "
            "policy) before the connector may act for you in Dynamics 365. Open Dynamics 365 in your browser once "
            "to complete it, then press again — or decide in Dynamics.")
GUEST_TEXT = ("Guest accounts cannot decide as themselves in Dynamics 365 from Teams. Decide in Dynamics 365, "
              "signed in with your own organisation's account.")
LEGACY_TEXT = ("This Teams client sent an older kind of button press that cannot sign you in, so the connector "
               "cannot decide as you in Dynamics 365. Press again in the current Teams desktop, web or mobile app.")
REPLY_TEXT = ("A typed reply cannot sign you in, so the connector cannot decide as you in Dynamics 365 right now. "
              "Press Approve or Reject on the card instead (Teams signs you in; typed replies then work for a while).")
MANUAL_TEXT = ("Your Teams client signed you in with a code instead of single sign-on, which the connector does not "
               "accept. Press again in the current Teams desktop, web or mobile app, or decide in Dynamics 365.")


class SignInGate:
    """Decides, per press, whether and as whom the decision goes ahead.

    Args:
        settings: `[approvals]` (act_as, the loginRequest texts).
        validator: checks SSO tokens (None when act_as is "service").
        obo: the on-behalf-of exchange and its per-user memory cache.
        scopes: environment name -> F&O scope ("https://<env host>/.default").
        app_id: the bot's app id (tokenExchangeResource.id); app_id_uri: its Application ID URI.
        sign_in_url: the loginRequest's Sign-In button.
    """

    def __init__(self, settings: ApprovalSettings, *, validator: TokenValidator | None, obo: UserTokenExchange | None,
                 scopes: dict[str, str], app_id: str, app_id_uri: str, sign_in_url: str) -> None:
        self.settings = settings
        self.validator = validator
        self.obo = obo
        self.scopes = dict(scopes)
        self.app_id = app_id
        self.app_id_uri = app_id_uri
        self.sign_in_url = sign_in_url

    @property
    def mode(self) -> str:
        return self.settings.act_as

    def login_request(self, outcome: str) -> LoginRequest:
        return LoginRequest(text=f"Sign in to {outcome.lower()} as yourself in Dynamics 365",
                            connection_name=self.settings.sso_connection_name, exchange_id=self.app_id,
                            exchange_uri=self.app_id_uri, sign_in_url=self.sign_in_url)

    def _cannot(self, text: str, audit: str) -> Gate:
        """The approver cannot be signed in: fall back, or stop with `text` for the presser only."""
        if self.mode == "approver-or-service":
            return Gate(True, SERVICE, fallback=audit)
        return Gate(False, answer=text, audit=audit)

    async def check(self, press: Any, environment: str, outcome: str) -> Gate:
        """The gate for a press by the approval's assignee on a pending approval (`press`: service.Press)."""
        if self.mode == SERVICE:
            return Gate(True, SERVICE)
        if self.validator is None or self.obo is None or environment not in self.scopes:
            return self._cannot("The connector is not set up to decide as you (single sign-on is not configured).",
                                "single sign-on is not configured for this environment")
        if press.kind == "reply":  # a typed reply cannot sign in: it may use the approver's recent sign-in only
            if press.user_object_id and self.obo.has_token(press.user_object_id, self.scopes[environment]):
                return Gate(True, APPROVER)
            return self._cannot(REPLY_TEXT, "typed reply: no sign-in possible and no recent sign-in of the approver")
        if press.kind != "execute":
            return self._cannot(LEGACY_TEXT, "legacy Action.Submit press: no sign-in possible")
        oid = press.user_object_id or ""
        scope = self.scopes[environment]
        if press.auth_token:
            return await self._signed_in(press, oid, scope)
        if press.auth_state:
            return self._cannot(MANUAL_TEXT, "manual sign-in code (no token service to redeem it)")
        if oid and self.obo.has_token(oid, scope):
            return Gate(True, APPROVER)
        return Gate(False, answer=self.login_request(outcome), audit="sign-in requested (loginRequest)")

    async def _signed_in(self, press: Any, oid: str, scope: str) -> Gate:
        assert self.validator is not None and self.obo is not None
        try:
            user = await self.validator.validate(press.auth_token, presser_object_id=oid or None)
        except UserTokenRejected as exc:
            if exc.unavailable:
                return Gate(False, answer="Signing you in is not possible right now; please press again in a "
                                          "minute.", audit=f"sign-in check unavailable: {exc.reason}")
            # a bad token never falls back: someone presented a credential that is not the presser's
            return Gate(False, answer=f"The sign-in was refused: {exc.reason}. Nothing was sent to Dynamics 365.",
                        audit=f"sign-in refused: {exc.reason}")
        if user.upn and "#ext#" in user.upn.lower():
            return self._cannot(GUEST_TEXT, f"guest account {user.upn}")
        try:
            await self.obo.exchange(user.object_id, user.token, user.expires_at, scope)
        except ConsentRequired:
            return self._cannot(CONSENT_TEXT, "on-behalf-of refused: consent missing (AADSTS65001)")
        except InteractionRequired:
            return self._cannot(MFA_TEXT, "on-behalf-of refused: MFA or Conditional Access requires interaction")
        except TokenUnavailable as exc:
            return Gate(False, answer="Microsoft Entra ID is not reachable right now; please press again in a "
                                      "minute.", audit=f"on-behalf-of unavailable: {exc.reason}")
        except TokenError as exc:
            return self._cannot(f"Microsoft Entra ID refused to let the connector act for you ({exc.error}).",
                                f"on-behalf-of refused: {exc.error} {exc.codes}")
        except TokenFailure as exc:  # pragma: no cover - the tree has no other leaf today
            return self._cannot("The connector could not act for you.", f"on-behalf-of failed: {type(exc).__name__}")
        return Gate(True, APPROVER)

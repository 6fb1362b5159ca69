"""act_as = "approver": Teams SSO on the press, on-behalf-of with MSAL, and the decision made in F&O as the approver.

Real parts: the sandbox's Entra (SSO tokens, the OBO grant, its switches) and F&O (delegated tokens mapped by UPN,
the completion policy, who completed each item) over TLS, MSAL, the token validator, SQLite. Teams is the recording
fake of approvals_fakes (the Teams stand-in's loginRequest round trip is scenario 14).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl

import aiohttp
import pytest

from approvals_fakes import execute, make_world, personal_install, submit, text_of
from bot import GraphUser, LoginRequest, UserTokenValidator
from connector.approvals import ApprovalSettings, FoEnvironment, SignInGate, workflow_actions
from connector.secrets import Secret
from connector.tokens import ClientSecret, OnBehalfOf, TokenProvider, fo_scope
from dynamics import ODataClient
from test_approvals_sandbox import _post, _token, _tracked

runner = pytest.importorskip("sandbox.runner")
people = pytest.importorskip("sandbox.people")
obo_mod = pytest.importorskip("sandbox.entra.obo")

ENV = "contoso-sandbox"


@dataclasses.dataclass
class Rig:
    state: dict
    session: aiohttp.ClientSession
    odata: ODataClient
    issuer: object
    fno: object
    tls: ssl.SSLContext
    provider: TokenProvider
    obo: OnBehalfOf

    @property
    def bot_app_id(self) -> str:
        return self.state["teams"]["bot_app_id"]

    def sso(self, person, **kw) -> str:
        return obo_mod.mint_sso_token(self.issuer, app_id=self.bot_app_id, object_id=person.object_id,
                                      upn=person.upn, name=person.name, **kw)

    async def post(self, path: str, body: dict) -> dict:
        return await _post(self.session, self.state["fno"]["base_url"] + path, body)

    async def stats(self) -> dict:
        async with self.session.get(self.state["fno"]["admin_url"] + "/fno/stats") as resp:
            return await resp.json()


@pytest.fixture
async def rig(tmp_path):
    running = await runner.start_sandbox(tmp_path / "sandbox")
    state = running.state
    tls = ssl.create_default_context(cafile=state["ca_cert"])
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls))
    token = await _token(session, state)

    async def get_token(*, force_refresh: bool = False) -> str:
        return token

    provider = TokenProvider(authority_host=state["entra"]["authority_host"], ca_bundle=state["ca_cert"])
    obo = OnBehalfOf(provider, state["tenant_id"], state["teams"]["bot_app_id"],
                     ClientSecret(Secret(state["teams"]["bot_app_password"])))
    odata = ODataClient(session, state["fno"]["base_url"], get_token, ssl=tls)
    try:
        yield Rig(state, session, odata, running.services["entra"], running.services["fno"], tls, provider, obo)
    finally:
        provider.close()
        await session.close()
        await running.close()


async def _world(tmp_path, rig: Rig, act_as: str, name: str = "a.db"):
    settings = ApprovalSettings(teams_app_external_id="manifest-1", act_as=act_as)
    world = await make_world(str(tmp_path / name), settings=settings)
    scope = fo_scope(rig.state["fno"]["base_url"])
    validator = UserTokenValidator(rig.session, authority_host=rig.state["entra"]["authority_host"],
                                   app_id=rig.bot_app_id, tenants=[rig.state["tenant_id"]], ssl=rig.tls)
    world.service.gate = SignInGate(settings, validator=validator, obo=rig.obo, scopes={ENV: scope},
                                    app_id=rig.bot_app_id, app_id_uri=f"api://botid-{rig.bot_app_id}",
                                    sign_in_url="https://login.example/authorize")
    world.approvals.deps.fo[ENV] = FoEnvironment(ENV, rig.odata, workflow_actions(rig.odata, settings))

    def as_user(env: str, oid: str):
        if not rig.obo.has_token(oid, scope):
            return None
        client = ODataClient(rig.session, rig.state["fno"]["base_url"], rig.obo.token_callable(oid, scope),
                             ssl=rig.tls)
        return workflow_actions(client, settings)

    world.approvals.deps.as_user = as_user
    people_by = {p.upn.lower(): p for p in people.PEOPLE}

    async def get_user(key):
        p = people_by.get(key.lower())
        return GraphUser(p.object_id, p.name, p.upn, p.upn) if p else None

    world.graph.get_user = get_user
    return world


def _graph_user(fo_user: str) -> tuple[object, GraphUser]:
    person = people.by_fo_user(fo_user)
    return person, GraphUser(person.object_id, person.name, person.upn, person.upn)


async def _pending(rig: Rig, world, approver: str = "megan") -> str:
    [event] = (await rig.post("/_sandbox/scenario/submit_to_workflow",
                              {"legal_entity": "usmf", "approver": approver}))["events"]
    return await _tracked(world, rig.odata, event)


def _press(user: GraphUser, wid: str, token: str | None = None, **kw):
    ex = execute(user, wid=wid, **kw)
    return dataclasses.replace(ex, auth_token=token) if token else ex


async def _audit(world, wid: str) -> list:
    return await world.store.list_audit(environment=ENV, work_item_id=wid, limit=1000)


async def test_sso_press_completes_as_the_approver_once(tmp_path, rig):
    world = await _world(tmp_path, rig, "approver")
    person, megan = _graph_user("megan")
    try:
        wid = await _pending(rig, world)
        # no token yet: the Universal Actions login request, nothing stored, F&O untouched
        first = await world.service.on_execute(_press(megan, wid))
        assert isinstance(first, LoginRequest) and first.exchange_id == rig.bot_app_id
        assert (await world.store.get_approval(ENV, wid)).status == "pending"
        # Teams retries with the SSO token: decided as Megan herself
        answer = await world.service.on_execute(_press(megan, wid, rig.sso(person), comment="ok"))
        assert "sending the decision" in text_of(answer)
        await world.run_pipeline()
        row = await rig.odata.get("WorkflowWorkItems", company=None, key={"Id": wid})
        assert row["Status"] == "Completed" and row["CompletedBy"] == "megan"
        stats = await rig.stats()
        assert stats["complete_calls"] == {wid: 1}
        assert [(c["completed_by"], c["via"]) for c in stats["completions"]] == [("megan", "delegated")]
        assert (await world.store.get_approval(ENV, wid)).status == "decided"
        details = [(e.action, e.detail) for e in await _audit(world, wid)]
        assert ("sign-in", "sign-in requested (loginRequest)") in details
        assert any(a == "completed" and "as the approver" in d for a, d in details), details
    finally:
        await world.store.close()


async def test_five_concurrent_sso_presses_complete_once(tmp_path, rig):
    world = await _world(tmp_path, rig, "approver")
    person, megan = _graph_user("megan")
    try:
        wid = await _pending(rig, world)
        token = rig.sso(person)
        await asyncio.gather(*[world.service.on_execute(_press(megan, wid, token)) for _ in range(5)])
        await world.run_pipeline()
        stats = await rig.stats()
        assert stats["complete_calls"] == {wid: 1}
        assert [c["via"] for c in stats["completions"]] == ["delegated"]
        assert rig.obo.exchanges == 1  # the concurrent presses shared one on-behalf-of exchange
    finally:
        await world.store.close()


@pytest.mark.parametrize("bad", ["other_user", "other_tenant", "other_audience", "expired"])
async def test_a_token_that_is_not_the_pressers_is_refused(tmp_path, rig, bad):
    world = await _world(tmp_path, rig, "approver-or-service")  # a bad token never falls back to the service
    person, megan = _graph_user("megan")
    alex, _ = _graph_user("alex")
    token = {"other_user": lambda: rig.sso(alex),
             "other_tenant": lambda: rig.sso(person, tenant="11111111-2222-3333-4444-555555555555"),
             "other_audience": lambda: rig.sso(person, audience="api://someone-else"),
             "expired": lambda: rig.sso(person, lifetime=-3600)}[bad]()
    try:
        wid = await _pending(rig, world)
        answer = await world.service.on_execute(_press(megan, wid, token))
        assert "The sign-in was refused" in text_of(answer)
        await world.run_pipeline()
        assert (await world.store.get_approval(ENV, wid)).status == "pending"
        stats = await rig.stats()
        assert wid not in stats["complete_calls"] and wid not in stats["validate_calls"]
        refused = [e for e in await _audit(world, wid) if e.action == "sign-in"]
        assert refused and refused[-1].detail.startswith("sign-in refused"), refused
        assert token not in repr(refused) and token not in text_of(answer)
    finally:
        await world.store.close()


async def test_consent_missing_tells_the_presser_or_falls_back(tmp_path, rig):
    rig.issuer.sso.consent_missing = True
    person, megan = _graph_user("megan")
    strict = await _world(tmp_path, rig, "approver", "strict.db")
    try:
        wid = await _pending(rig, strict)
        answer = await strict.service.on_execute(_press(megan, wid, rig.sso(person)))
        assert "admin consent" in text_of(answer) and "Microsoft Dynamics ERP" in text_of(answer)
        await strict.run_pipeline()
        assert (await strict.store.get_approval(ENV, wid)).status == "pending"
        assert wid not in (await rig.stats())["complete_calls"]
        assert any("consent missing" in e.detail for e in await _audit(strict, wid))
    finally:
        await strict.store.close()
    loose = await _world(tmp_path, rig, "approver-or-service", "loose.db")
    try:
        wid = await _pending(rig, loose)
        answer = await loose.service.on_execute(_press(megan, wid, rig.sso(person)))
        assert "sending the decision" in text_of(answer)
        await loose.run_pipeline()
        row = await rig.odata.get("WorkflowWorkItems", company=None, key={"Id": wid})
        assert row["Status"] == "Completed" and "recorded by the connector's service user" in row["Comment"]
        assert [c["via"] for c in (await rig.stats())["completions"] if c["work_item_id"] == wid] == ["app"]
        assert any(e.action == "fallback" and "consent missing" in e.detail for e in await _audit(loose, wid))
    finally:
        await loose.store.close()


async def test_mfa_required_is_shown_to_the_presser(tmp_path, rig):
    rig.issuer.sso.mfa_required = True
    person, megan = _graph_user("megan")
    world = await _world(tmp_path, rig, "approver")
    try:
        wid = await _pending(rig, world)
        answer = await world.service.on_execute(_press(megan, wid, rig.sso(person)))
        assert "multi-factor" in text_of(answer)
        assert any("MFA" in e.detail for e in await _audit(world, wid))
        assert (await world.store.get_approval(ENV, wid)).status == "pending"
    finally:
        await world.store.close()


async def test_f_and_o_refuses_a_delegated_completion_shown_and_audited(tmp_path, rig):
    person, megan = _graph_user("megan")
    world = await _world(tmp_path, rig, "approver")
    await world.store.upsert_install(personal_install(megan.id))
    try:
        wid = await _pending(rig, world)
        # F&O reassigned the item behind our back, and only its assignee may complete it there
        rig.fno.config.completion_policy = "assignee_only"
        item = rig.fno.state.get("WorkflowWorkItems", {"Id": wid})
        rig.fno.state.update("WorkflowWorkItems", item, UserId="alex")
        await world.service.on_execute(_press(megan, wid, rig.sso(person)))
        await world.run_pipeline()
        assert wid not in (await rig.stats())["complete_calls"]
        approval = await world.store.get_approval(ENV, wid)
        assert approval.status == "pending"  # the buttons work again
        failed = [e for e in await _audit(world, wid) if e.action == "failed"]
        assert failed and "told in the 1:1 chat" in failed[-1].detail, failed
        told = [t for _, _, t in world.poster.replies if t and "Dynamics 365" in t]
        assert told and "work item " + wid in told[-1]
    finally:
        await world.store.close()


async def test_legacy_submit_under_approver_asks_for_a_current_client(tmp_path, rig):
    person, megan = _graph_user("megan")
    world = await _world(tmp_path, rig, "approver")
    try:
        wid = await _pending(rig, world)
        answer = await world.service.on_submit(submit(megan, wid=wid, personal=True))
        assert "Press again in the current Teams" in text_of(answer)
        assert (await world.store.get_approval(ENV, wid)).status == "pending"
    finally:
        await world.store.close()


async def test_user_tokens_never_reach_logs_store_or_messages(tmp_path, rig, caplog):
    caplog.set_level(logging.DEBUG)
    person, megan = _graph_user("megan")
    world = await _world(tmp_path, rig, "approver")
    try:
        wid = await _pending(rig, world)
        sso = rig.sso(person)
        press = _press(megan, wid, sso)
        logging.getLogger("test").info("press %r", press)
        await world.service.on_execute(press)
        await world.run_pipeline()
        fo_token = await rig.obo.get(person.object_id, fo_scope(rig.state["fno"]["base_url"]))
        db = (tmp_path / "a.db").read_bytes()
        for t in (sso, fo_token):
            for part in t.split("."):
                assert part.encode() not in db
                assert part not in caplog.text
        assert sso not in repr(press) and "auth_token" not in repr(press)
    finally:
        await world.store.close()


async def test_no_enabled_f_and_o_user_for_the_approver_is_told_and_audited(tmp_path, rig):
    person, megan = _graph_user("megan")
    world = await _world(tmp_path, rig, "approver")
    await world.store.upsert_install(personal_install(megan.id))
    try:
        wid = await _pending(rig, world)
        row = rig.fno.state.get("SystemUsers", {"UserID": "megan"})
        rig.fno.state.update("SystemUsers", row, Enabled=False)
        await world.service.on_execute(_press(megan, wid, rig.sso(person)))
        await world.run_pipeline()
        assert wid not in (await rig.stats())["complete_calls"]
        assert (await world.store.get_approval(ENV, wid)).status == "pending"
        failed = [e for e in await _audit(world, wid) if e.action == "failed"]
        assert failed and "no enabled F&O user" in failed[-1].detail, failed
        assert any(t and "no enabled user for your account" in t for _, _, t in world.poster.replies)
    finally:
        await world.store.close()


async def test_a_guest_cannot_decide_as_themselves(tmp_path, rig):
    person, megan = _graph_user("megan")
    guest_token = obo_mod.mint_sso_token(rig.issuer, app_id=rig.bot_app_id, object_id=person.object_id,
                                         upn="megan_fabrikam.example#EXT#@contoso.example", name=person.name)
    strict = await _world(tmp_path, rig, "approver")
    try:
        wid = await _pending(rig, strict)
        answer = await strict.service.on_execute(_press(megan, wid, guest_token))
        assert "Guest accounts" in text_of(answer)
        assert any("guest account" in e.detail for e in await _audit(strict, wid))
        assert wid not in (await rig.stats())["validate_calls"]
    finally:
        await strict.store.close()


async def test_user_tokens_are_cached_renewed_and_forgotten_when_the_sign_in_expires(rig):
    from connector.tokens import SignInRequired

    now = {"mono": 1000.0, "wall": __import__("time").time()}
    provider = TokenProvider(authority_host=rig.state["entra"]["authority_host"], ca_bundle=rig.state["ca_cert"],
                             clock=lambda: now["mono"])
    obo = OnBehalfOf(provider, rig.state["tenant_id"], rig.bot_app_id,
                     ClientSecret(Secret(rig.state["teams"]["bot_app_password"])), wall=lambda: now["wall"])
    person, _ = _graph_user("megan")
    scope = fo_scope(rig.state["fno"]["base_url"])
    try:
        sso = rig.sso(person, lifetime=7200)
        first = await obo.exchange(person.object_id, sso, now["wall"] + 7200, scope)
        assert await obo.get(person.object_id, scope) == first and obo.exchanges == 1  # cached
        now["mono"] += 3599 - 100  # inside the renewal margin: renewed with the kept SSO token
        assert await obo.get(person.object_id, scope) and obo.exchanges == 2
        now["mono"] += 7200
        now["wall"] += 7200  # the SSO token itself has expired: the user must sign in again
        with pytest.raises(SignInRequired):
            await obo.get(person.object_id, scope)
        assert not obo.has_token(person.object_id, scope)
    finally:
        provider.close()


async def test_a_manual_sign_in_code_is_not_redeemed_and_falls_back_when_allowed(tmp_path, rig):
    person, megan = _graph_user("megan")
    strict = await _world(tmp_path, rig, "approver", "strict.db")
    try:
        wid = await _pending(rig, strict)
        press = dataclasses.replace(_press(megan, wid), auth_state="123456")
        answer = await strict.service.on_execute(press)
        assert "signed you in with a code" in text_of(answer)
        assert (await strict.store.get_approval(ENV, wid)).status == "pending"
    finally:
        await strict.store.close()
    loose = await _world(tmp_path, rig, "approver-or-service", "loose.db")
    try:
        wid = await _pending(rig, loose)
        await loose.service.on_execute(dataclasses.replace(_press(megan, wid), auth_state="123456"))
        await loose.run_pipeline()
        assert [c["via"] for c in (await rig.stats())["completions"] if c["work_item_id"] == wid] == ["app"]
    finally:
        await loose.store.close()

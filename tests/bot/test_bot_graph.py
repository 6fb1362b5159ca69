"""GraphClient against a recording Graph fake on loopback: URLs, $batch chunking and sub-request throttling,
cache, token refresh, error translation. Time is fake."""

from __future__ import annotations

import re
from collections import deque
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web

from bot import (
    GraphBadRequest,
    GraphClient,
    GraphForbidden,
    GraphNotFound,
    GraphThrottled,
    GraphUnavailable,
    GraphUser,
    RetryPolicy,
)

USERS = [
    {"id": "id-alex", "displayName": "Alex Wilber", "userPrincipalName": "alexw@contoso.com",
     "mail": "alex.wilber@contoso.com"},
    {"id": "id-dollar", "displayName": "Dollar", "userPrincipalName": "$admin@contoso.com", "mail": None},
    {"id": "id-guest", "displayName": "Guest", "userPrincipalName": "guest_fabrikam.com#EXT#@contoso.com",
     "mail": "guest@fabrikam.com"},
    {"id": "id-oneil", "displayName": "Pat O'Neil", "userPrincipalName": "pat@contoso.com",
     "mail": "o'neil@contoso.com"},
] + [{"id": f"id-{i}", "displayName": f"User {i}", "userPrincipalName": f"u{i}@contoso.com", "mail": None}
     for i in range(50)]


class FakeGraph:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[tuple[int, Any, dict]] = deque()
        self.throttle_in_batch: dict[str, int] = {}  # upn -> times to answer 429 inside $batch
        self.accepted_tokens: set[str] | None = None
        self.apps = {"manifest-guid": "catalog-id-1"}

    def answer(self, status: int, body: Any = None, headers: dict | None = None) -> None:
        self.script.append((status, body, headers or {}))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _user(self, path: str) -> dict | None:
        match = re.fullmatch(r"/users\('(.+)'\)|/users/([^/]+)", path)
        key = (match.group(1) or match.group(2)).replace("''", "'").lower()
        return next((u for u in USERS if key in (u["id"].lower(), u["userPrincipalName"].lower())), None)

    def _filter(self, expr: str) -> list[dict]:
        prop, value = re.fullmatch(r"(\w+) eq '(.*)'", expr).groups()
        value = value.replace("''", "'").lower()
        return [u for u in USERS if (u.get(prop) or "").lower() == value]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        auth = request.headers.get("Authorization", "")
        self.requests.append({"method": request.method, "path": request.path, "raw_path": request.raw_path,
                              "query": dict(request.query), "auth": auth, "json": body})
        if self.accepted_tokens is not None and auth[7:] not in self.accepted_tokens:
            return web.json_response({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}},
                                     status=401)
        if self.script:
            status, reply, headers = self.script.popleft()
            return web.json_response(reply, status=status, headers=headers)
        path = request.path.removeprefix("/v1.0")
        if request.method == "POST" and path == "/$batch":
            return web.json_response({"responses": [self._sub(r) for r in body["requests"]]})
        if request.method == "POST" and path.endswith("/teamwork/installedApps"):
            return web.json_response({"id": "installation-1"}, status=201)
        if path == "/appCatalogs/teamsApps":
            ext = re.fullmatch(r"externalId eq '(.*)'", request.query["$filter"]).group(1)
            return web.json_response({"value": [{"id": self.apps[ext]}] if ext in self.apps else []})
        if path == "/users":
            return web.json_response({"value": self._filter(request.query["$filter"])})
        user = self._user(path)
        if user is None:
            return web.json_response({"error": {"code": "Request_ResourceNotFound", "message": "nope"}}, status=404)
        return web.json_response(user)

    def _sub(self, sub: dict) -> dict:
        path = unquote(sub["url"].split("?")[0])
        user = self._user(path)
        upn = user["userPrincipalName"] if user else path
        if self.throttle_in_batch.get(upn, 0) > 0:
            self.throttle_in_batch[upn] -= 1
            return {"id": sub["id"], "status": 429, "headers": {"Retry-After": "3"},
                    "body": {"error": {"code": "TooManyRequests", "message": "slow"}}}
        if user is None:
            return {"id": sub["id"], "status": 404, "body": {"error": {"code": "Request_ResourceNotFound"}}}
        return {"id": sub["id"], "status": 200, "body": user}


@pytest.fixture
async def graph(aiohttp_server) -> FakeGraph:
    fake = FakeGraph()
    fake.server = await aiohttp_server(fake.app())
    return fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(graph, session, token, fake_time) -> GraphClient:
    return GraphClient(session, str(graph.server.make_url("/")), token, sleep=fake_time.sleep, clock=fake_time.clock,
                       cache_ttl=3600, negative_ttl=300, policy=RetryPolicy(max_attempts=4, max_inline_wait=10),
                       rng=lambda: 0.0)


ALEX = GraphUser("id-alex", "Alex Wilber", "alexw@contoso.com", "alex.wilber@contoso.com")


async def test_get_user_by_upn_and_cache_hit(client, graph, token):
    assert await client.get_user("alexw@contoso.com") == ALEX
    assert await client.get_user("ALEXW@contoso.com") == ALEX
    assert await client.get_user("id-alex") == ALEX  # cached under its id too
    [req] = graph.requests
    assert req["path"] == "/v1.0/users/alexw@contoso.com"
    assert req["query"]["$select"] == "id,displayName,userPrincipalName,mail"
    assert req["auth"] == "Bearer tok-1"


async def test_upn_starting_with_dollar_uses_the_key_syntax(client, graph):
    user = await client.get_user("$admin@contoso.com")
    assert user.id == "id-dollar"
    assert graph.requests[0]["raw_path"].startswith("/v1.0/users('$admin@contoso.com')")


async def test_guest_upn_encodes_the_hash(client, graph):
    user = await client.get_user("guest_fabrikam.com#EXT#@contoso.com")
    assert user.id == "id-guest"
    assert graph.requests[0]["raw_path"].startswith("/v1.0/users/guest_fabrikam.com%23EXT%23@contoso.com?")


async def test_missing_user_is_none_and_negatively_cached_for_less_time(client, graph, fake_time):
    assert await client.get_user("ghost@contoso.com") is None
    assert await client.get_user("ghost@contoso.com") is None
    assert len(graph.requests) == 1
    fake_time.now += 301
    assert await client.get_user("ghost@contoso.com") is None
    assert len(graph.requests) == 2
    await client.get_user("alexw@contoso.com")
    fake_time.now += 3000  # positive entries live longer
    await client.get_user("alexw@contoso.com")
    assert len(graph.requests) == 3


async def test_find_user_by_mail_escapes_quotes_and_falls_back_to_upn(client, graph):
    assert (await client.find_user_by_mail("o'neil@contoso.com")).id == "id-oneil"
    assert graph.requests[0]["query"]["$filter"] == "mail eq 'o''neil@contoso.com'"
    assert (await client.find_user_by_mail("u7@contoso.com")).id == "id-7"
    assert [r["query"]["$filter"] for r in graph.requests[1:]] == [
        "mail eq 'u7@contoso.com'", "userPrincipalName eq 'u7@contoso.com'"]
    assert await client.find_user_by_mail("nobody@contoso.com") is None
    await client.find_user_by_mail("nobody@contoso.com")
    assert len(graph.requests) == 5  # the miss is cached


async def test_get_users_batches_in_chunks_of_20(client, graph):
    upns = [f"u{i}@contoso.com" for i in range(45)] + ["ghost@contoso.com"]
    found = await client.get_users(upns)
    batches = [r for r in graph.requests if r["path"] == "/v1.0/$batch"]
    assert [len(b["json"]["requests"]) for b in batches] == [20, 20, 6]
    assert batches[0]["json"]["requests"][0] == {
        "id": "1", "method": "GET", "url": "/users/u0@contoso.com?$select=id,displayName,userPrincipalName,mail"}
    assert found["u44@contoso.com"].id == "id-44" and found["ghost@contoso.com"] is None
    assert list(found) == upns
    await client.get_users(upns)  # all cached, hits and misses
    assert len(graph.requests) == 3


async def test_throttled_sub_requests_are_retried_alone_after_their_retry_after(client, graph, fake_time):
    graph.throttle_in_batch = {"u1@contoso.com": 1, "u2@contoso.com": 1}
    found = await client.get_users(["u0@contoso.com", "u1@contoso.com", "u2@contoso.com"])
    assert [u.id for u in found.values()] == ["id-0", "id-1", "id-2"]
    first, second = graph.requests
    assert len(first["json"]["requests"]) == 3
    assert [r["url"].split("?")[0] for r in second["json"]["requests"]] == ["/users/u1@contoso.com",
                                                                           "/users/u2@contoso.com"]
    assert fake_time.sleeps == [3.0]


async def test_sub_requests_throttled_beyond_the_budget_raise_and_keep_the_rest_cached(client, graph):
    graph.throttle_in_batch = {"u1@contoso.com": 99}
    with pytest.raises(GraphThrottled) as info:
        await client.get_users(["u0@contoso.com", "u1@contoso.com"])
    assert info.value.retry_after == 3.0
    count = len(graph.requests)
    assert await client.get_user("u0@contoso.com") is not None
    assert len(graph.requests) == count


async def test_429_honours_retry_after_then_throttled_beyond_the_inline_wait(client, graph, fake_time):
    graph.answer(429, {"error": {"code": "TooManyRequests", "message": "x"}}, {"Retry-After": "2"})
    assert await client.get_user("alexw@contoso.com") == ALEX
    assert fake_time.sleeps == [2.0]
    graph.answer(429, {"error": {"code": "TooManyRequests", "message": "x"}}, {"Retry-After": "120"})
    with pytest.raises(GraphThrottled) as info:
        await client.get_user("u1@contoso.com")
    assert info.value.retry_after == 120.0 and fake_time.sleeps == [2.0]


async def test_401_forces_one_token_refresh(client, graph, token):
    graph.accepted_tokens = {"tok-2"}
    assert await client.get_user("alexw@contoso.com") == ALEX
    assert [r["auth"] for r in graph.requests] == ["Bearer tok-1", "Bearer tok-2"]
    assert token.calls == [False, True]


async def test_403_names_the_permission(client, graph):
    graph.answer(403, {"error": {"code": "Authorization_RequestDenied",
                                 "message": "Missing role permissions: User.Read.All"}})
    with pytest.raises(GraphForbidden) as info:
        await client.get_user("alexw@contoso.com")
    assert info.value.permission == "User.Read.All"
    graph.answer(403, {"error": {"code": "Forbidden", "message": "Insufficient privileges."}})
    with pytest.raises(GraphForbidden) as info:
        await client.install_app_for_user("id-alex", "catalog-id-1")
    assert info.value.permission == "TeamsAppInstallation.ReadWriteSelfForUser.All"
    assert "TeamsAppInstallation.ReadWriteSelfForUser.All" in str(info.value)


async def test_400_and_unreachable(client, graph, session, token, fake_time, unused_tcp_port):
    graph.answer(400, {"error": {"code": "BadRequest", "message": "Invalid filter clause"}})
    with pytest.raises(GraphBadRequest, match="Invalid filter clause"):
        await client.find_user_by_mail("x@y")
    down = GraphClient(session, f"http://127.0.0.1:{unused_tcp_port}", token, sleep=fake_time.sleep,
                       clock=fake_time.clock)
    with pytest.raises(GraphUnavailable):
        await down.get_user("alexw@contoso.com")


async def test_install_app_for_user(client, graph):
    await client.install_app_for_user("id-alex", "catalog-id-1")
    [req] = graph.requests
    assert (req["method"], req["path"]) == ("POST", "/v1.0/users/id-alex/teamwork/installedApps")
    bind = f"{graph.server.make_url('/v1.0')}/appCatalogs/teamsApps/catalog-id-1"
    assert req["json"] == {"teamsApp@odata.bind": bind}
    graph.answer(409, {"error": {"code": "Conflict", "message": "App is already installed."}})
    await client.install_app_for_user("id-alex", "catalog-id-1")  # already there: fine
    graph.answer(404, {"error": {"code": "NotFound", "message": "no such user"}})
    with pytest.raises(GraphNotFound):
        await client.install_app_for_user("id-ghost", "catalog-id-1")


async def test_find_teams_app(client, graph):
    assert await client.find_teams_app("manifest-guid") == "catalog-id-1"
    assert await client.find_teams_app("other") is None
    assert graph.requests[0]["query"]["$filter"] == "externalId eq 'manifest-guid'"

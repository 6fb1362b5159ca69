"""Microsoft Graph stand-in (spec B.1, B.2, B.6): users, $batch, per-user Teams app installs, the app catalog,
and `GET /users/{id}/mailboxSettings` (timeZone as Outlook keeps it: a Windows zone name; MailboxSettings.Read),
and `GET /applications(appId='<id>')` (the app registrations: Expose an API, pre-authorized clients, API permissions;
Application.Read.All). Admin: POST /_sandbox/graph/application {appId, ...fields}: replace fields of a registration.

Shares the Teams stand-in's World (people, personal installs) so a Graph install makes the channel tell the bot.
Every request needs a Graph token (audience = the configured Graph resource) with the right application role.
Change-notification subscriptions for channel messages and channel message reads: sandbox/teams/subscriptions.py.
Admin: GET /_sandbox/graph/log, POST /_sandbox/graph/reset, POST /_sandbox/graph/fail {path,status,count,retry_after},
GET /_sandbox/graph/subscriptions, POST /_sandbox/graph/clock {advance}, POST /_sandbox/graph/deliver {fail?},
POST /_sandbox/graph/lifecycle {event, subscription?}.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web

from sandbox.people import Person
from sandbox.teams.limits import Fault, Faults
from sandbox.teams.subscriptions import SubscriptionStandIn
from sandbox.teams.world import World

USER_READ = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
CATALOG_READ = {"AppCatalog.Read.All", "AppCatalog.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
INSTALL_SELF = {"TeamsAppInstallation.ReadWriteSelfForUser.All", "TeamsAppInstallation.ReadWriteForUser.All",
                "TeamsAppInstallation.ReadWriteAndConsentSelfForUser.All"}
MAILBOX_READ = {"MailboxSettings.Read", "MailboxSettings.ReadWrite"}
APPLICATION_READ = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                    "Directory.ReadWrite.All"}
# Outlook's Windows time zone names by the person's default legal entity (the seed's companies)
MAILBOX_ZONES = {"usmf": "Pacific Standard Time", "demf": "W. Europe Standard Time", "gbsi": "GMT Standard Time"}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
MAX_BATCH = 20
USER_FIELDS = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
               "preferredLanguage", "surname", "userPrincipalName", "id")


@dataclass
class Reply:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message,
                                    "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                   "request-id": str(uuid.uuid4())}}}, headers or {})


def _denied() -> Reply:
    return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


@dataclass
class GraphUser:
    id: str
    displayName: str
    userPrincipalName: str
    mail: str | None
    jobTitle: str | None
    person: Person | None = None

    def as_json(self) -> dict:
        given, _, surname = self.displayName.partition(" ")
        return {"businessPhones": [], "displayName": self.displayName, "givenName": given, "jobTitle": self.jobTitle,
                "mail": self.mail, "mobilePhone": None, "officeLocation": None, "preferredLanguage": "en-US",
                "surname": surname, "userPrincipalName": self.userPrincipalName, "id": self.id,
                "otherMails": [], "proxyAddresses": [f"SMTP:{self.mail}"] if self.mail else []}


@dataclass
class GraphService:
    world: World
    verify_token: Callable[[str, str], "dict | Awaitable[dict]"]
    resource: str = "https://graph.microsoft.com"
    teams_app_external_id: str = ""  # the manifest id
    teams_app_name: str = "ML Connector"
    on_personal_install: Callable[[Person, bool], Awaitable[object]] | None = None
    clock: Callable[[], float] = time.monotonic
    faults: Faults = field(default_factory=Faults)
    log: list[dict] = field(default_factory=list)
    tasks: set = field(default_factory=set)
    users: list[GraphUser] = field(default_factory=list)
    base_url: str = ""
    applications: dict[str, dict] = field(default_factory=dict)  # appId (lower case) -> Graph application resource
    subscriptions: SubscriptionStandIn = None  # type: ignore[assignment]  # made in __post_init__

    def __post_init__(self) -> None:
        if self.subscriptions is None:
            self.subscriptions = SubscriptionStandIn(self.world)
        self.world.message_listeners.append(self._channel_message)
        self.teams_app_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "sandbox-teams-app:" + self.teams_app_external_id))
        if not self.users:
            dom = self.world.people[0].upn.split("@", 1)[1] if self.world.people else "example.com"
            self.users = [GraphUser(p.object_id, p.name, p.upn, p.upn, p.job_title, p) for p in self.world.people]
            # a B2B guest, so the #EXT# form of a UPN is exercised
            self.users.append(GraphUser("0b5e0100-3c2d-4e1f-8a9b-000000000100", "Kari Nordmann",
                                        f"kari.nordmann_fabrikam.example#EXT#@{dom}", "kari.nordmann@fabrikam.example",
                                        "Vendor contact (guest)"))

    # --- auth -------------------------------------------------------------------------------------------------
    async def roles(self, header: str) -> set[str] | Reply:
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = header[7:].strip()
        for audience in (self.resource, GRAPH_APP_ID):
            try:
                claims = self.verify_token(token, audience)
                if inspect.isawaitable(claims):
                    claims = await claims
                return set(claims.get("roles") or [])
            except Exception:  # noqa: BLE001 - any failure is an invalid token
                continue
        return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")

    def _channel_message(self, team, channel_id: str, root_id: str, message_id: str) -> None:
        if self.subscriptions.on_channel_message(team, channel_id, root_id, message_id):
            self.spawn(self.subscriptions.deliver_due())

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- dispatch ---------------------------------------------------------------------------------------------
    async def handle(self, method: str, url: str, body, roles: set[str], app_id: str = "") -> Reply:
        """One Graph call (direct or inside $batch). `url` is the path after the host, with query."""
        parts = urlsplit(url)
        path = parts.path if parts.path.startswith("/") else "/" + parts.path
        if not path.startswith("/v1.0/"):
            path = "/v1.0" + path
        fault = self.faults.take(method, path)
        if fault:
            hdrs = {} if fault.retry_after is None else {"Retry-After": str(int(fault.retry_after))}
            code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
            return _error(fault.status, code, "Injected fault.", hdrs)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        seg = unquote(path[len("/v1.0/"):])
        if method == "GET" and seg == "users":
            return self.list_users(query, roles)
        m = re.fullmatch(r"users(?:\('(?P<q>.+)'\)|/(?P<s>[^/]+))(?P<rest>/.*)?", seg)
        if m:
            key, rest = (m["q"] or m["s"]), (m["rest"] or "")
            if method == "GET" and not rest:
                return self.get_user(key, query, roles)
            if method == "GET" and rest == "/mailboxSettings":
                return self.mailbox_settings(key, query, roles)
            if rest.startswith("/teamwork/installedApps"):
                return await self.installed_apps(method, key, rest[len("/teamwork/installedApps"):], body, roles)
        m = re.fullmatch(r"applications\(appId='(?P<id>[^']+)'\)", seg)
        if method == "GET" and m:
            if not roles & APPLICATION_READ:
                return _denied()
            app = self.applications.get(m["id"].lower())
            if app is None:
                return _error(404, "Request_ResourceNotFound",
                              f"Resource '{m['id']}' does not exist or one of its queried reference-property objects "
                              "are not present.")
            return Reply(200, app)
        if method == "GET" and seg == "appCatalogs/teamsApps":
            return self.catalog(query, roles)
        if method == "POST" and re.fullmatch(r"teams/[^/]+/channels/[^/]+/messages(/[^/]+/replies)?", seg):
            # teams.md §6: app-only tokens may post channel messages only for migration (Teamwork.Migrate.All)
            return _error(401, "Unauthorized",
                          "Message POST is allowed in application-only context only for import purposes. "
                          "Refer to https://docs.microsoft.com/microsoftteams/platform/graph-api/import-messages/"
                          "import-external-messages-to-teams for more details.")
        if seg.startswith("subscriptions") or (method == "GET" and re.fullmatch(
                r"teams/[^/]+/channels/[^/]+/messages/[^/]+(/replies(/[^/]+)?)?", seg)):
            status, data = await self.subscriptions.handle(method, seg, body, roles, app_id)
            return Reply(status, data)
        return _error(400, "BadRequest", f"Resource not found for the segment '{seg.split('/')[0]}'.")

    def find_user(self, key: str) -> GraphUser | None:
        k = key.lower()
        return next((u for u in self.users if k in (u.id.lower(), u.userPrincipalName.lower())), None)

    @staticmethod
    def _select(user: dict, query: dict) -> dict:
        if "$select" not in query:
            return {k: user[k] for k in USER_FIELDS}
        wanted = {s.strip().lower() for s in query["$select"].split(",") if s.strip()}
        return {k: v for k, v in user.items() if k.lower() in wanted}

    def get_user(self, key: str, query: dict, roles: set[str]) -> Reply:
        if not roles & USER_READ:
            return _denied()
        user = self.find_user(key)
        if user is None:
            return _error(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist or one of its queried "
                                                           "reference-property objects are not present.")
        body = {"@odata.context": f"{self.base_url}/v1.0/$metadata#users/$entity"}
        return Reply(200, dict(body, **self._select(user.as_json(), query)))

    def mailbox_settings(self, key: str, query: dict, roles: set[str]) -> Reply:
        if not roles & MAILBOX_READ:
            return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        user = self.find_user(key)
        if user is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if user.person is None:  # a guest has no mailbox in this tenant
            return _error(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is "
                                                              "hosted on-premise.")
        zone = MAILBOX_ZONES.get(user.person.company, "UTC")
        settings = {"archiveFolder": "AAMkAGI2", "timeZone": zone, "dateFormat": "yyyy-MM-dd", "timeFormat": "HH:mm",
                    "language": {"locale": "en-US", "displayName": "English (United States)"},
                    "workingHours": {"daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                                     "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000",
                                     "timeZone": {"name": zone}}}
        if "$select" in query:
            wanted = {s.strip().lower() for s in query["$select"].split(",") if s.strip()}
            settings = {k: v for k, v in settings.items() if k.lower() in wanted}
        ctx = f"{self.base_url}/v1.0/$metadata#users('{user.id}')/mailboxSettings"
        return Reply(200, {"@odata.context": ctx, **settings})

    _CLAUSE = re.compile(r"^\s*(?:(userPrincipalName|mail|id|displayName)\s+eq\s+'((?:[^']|'')*)'"
                         r"|(otherMails|proxyAddresses)/any\(\s*(\w+)\s*:\s*\4\s+eq\s+'((?:[^']|'')*)'\s*\))\s*$",
                         re.IGNORECASE)

    def list_users(self, query: dict, roles: set[str]) -> Reply:
        if not roles & USER_READ:
            return _denied()
        users = self.users
        if "$filter" in query:
            tests = []
            for clause in re.split(r"\s+or\s+", query["$filter"].strip(), flags=re.IGNORECASE):
                m = self._CLAUSE.match(clause)
                if not m:
                    return _error(400, "Request_UnsupportedQuery", "Unsupported Query.")
                prop, value = (m[1], m[2]) if m[1] else (m[3], m[5])
                tests.append((prop.lower(), value.replace("''", "'").lower()))

            def hit(u: dict) -> bool:
                for prop, value in tests:
                    field_ = next(k for k in u if k.lower() == prop)
                    have = u[field_] if isinstance(u[field_], list) else [u[field_]]
                    if any(isinstance(h, str) and h.lower() == value for h in have):
                        return True
                return False
            users = [u for u in self.users if hit(u.as_json())]
        if "$top" in query:  # Graph: 1..999 for users
            try:
                top = int(query["$top"])
            except ValueError:
                top = 0
            if not 1 <= top <= 999:
                return _error(400, "Request_BadRequest", f"Invalid page size specified: '{query['$top']}'. Must be "
                              "between 1 and 999 inclusive.")
            users = users[:top]
        value = [self._select(u.as_json(), query) for u in users]
        return Reply(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#users", "value": value})

    def catalog(self, query: dict, roles: set[str]) -> Reply:
        if not roles & CATALOG_READ:
            return _denied()
        app = {"id": self.teams_app_id, "externalId": self.teams_app_external_id,
               "displayName": self.teams_app_name, "distributionMethod": "organization"}
        apps = [app]
        f = query.get("$filter")
        if f:
            m = re.fullmatch(r"\s*externalId\s+eq\s+'([^']*)'\s*", f, re.IGNORECASE)
            if not m:
                return _error(400, "BadRequest", "Unsupported filter.")
            apps = [a for a in apps if a["externalId"].lower() == m[1].lower()]
        return Reply(200, {"@odata.context": f"{self.base_url}/v1.0/$metadata#appCatalogs/teamsApps", "value": apps})

    def _installation_id(self, user: GraphUser) -> str:
        return base64.urlsafe_b64encode(f"{user.id}##{self.teams_app_id}".encode()).decode().rstrip("=")

    async def installed_apps(self, method: str, key: str, rest: str, body, roles: set[str]) -> Reply:
        if not roles & INSTALL_SELF:
            return _denied()
        user = self.find_user(key)
        if user is None or user.person is None:
            return _error(404, "NotFound", f"User '{key}' was not found.")
        installed = user.id in self.world.personal_installs
        iid = self._installation_id(user)
        if method == "GET" and rest in ("", "/"):
            value = [{"id": iid, "teamsApp": {"id": self.teams_app_id, "externalId": self.teams_app_external_id,
                                              "displayName": self.teams_app_name,
                                              "distributionMethod": "organization"}}] if installed else []
            return Reply(200, {"value": value})
        if method == "GET" and rest == f"/{iid}/chat" and installed:
            return Reply(200, {"id": f"19:{user.id}_{self.world.bot_app_id}@unq.gbl.spaces"})
        if method == "POST" and rest in ("", "/"):
            bind = str((body or {}).get("teamsApp@odata.bind") or "")
            m = re.search(r"teamsApps(?:/|\(')([^/')]+)", bind)
            if not m or m[1] != self.teams_app_id:
                return _error(404, "NotFound", "The teams app was not found in the catalog.")
            if installed:
                return _error(409, "Conflict", "App is already installed for this user.")
            self._notify(user.person, False)
            return Reply(201)
        if method == "DELETE" and rest == f"/{iid}" and installed:
            self._notify(user.person, True)
            return Reply(204)
        return _error(404, "NotFound", "Installation not found.")

    def _notify(self, person: Person, remove: bool) -> None:
        (self.world.personal_installs.discard if remove else self.world.personal_installs.add)(person.object_id)
        if self.on_personal_install is not None:  # Teams tells the bot shortly after, not inside this request
            task = asyncio.ensure_future(self.on_personal_install(person, remove))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def batch(self, body, roles: set[str]) -> Reply:
        reqs = (body or {}).get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return _error(400, "BadRequest", "Invalid batch payload.")
        if len(reqs) > MAX_BATCH:
            return _error(400, "BadRequest", f"Too many requests in the batch ({len(reqs)}); the limit is 20.")
        ids = [str(r.get("id")) for r in reqs if isinstance(r, dict)]
        if len(ids) != len(reqs) or len(set(ids)) != len(ids) or "None" in ids:
            return _error(400, "BadRequest", "Every batch request needs a unique id.")
        responses = []
        for r in reqs:
            sub = await self.handle(str(r.get("method", "GET")).upper(), str(r.get("url", "")), r.get("body"), roles)
            self._record(str(r.get("method", "GET")).upper(), "$batch:" + str(r.get("url")), sub.status)
            headers = dict(sub.headers)
            if sub.body is not None:
                headers.setdefault("Content-Type", "application/json")
            responses.append({"id": str(r["id"]), "status": sub.status, "headers": headers, "body": sub.body})
        return Reply(200, {"responses": responses})

    def _record(self, method: str, path: str, status: int) -> None:
        self.log.append({"seq": len(self.log) + 1, "time": self.clock(), "method": method, "path": path,
                         "status": status})


GRAPH = web.AppKey("graph_service", GraphService)


async def _graph_route(request: web.Request) -> web.Response:
    svc = request.app[GRAPH]
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    roles = await svc.roles(request.headers.get("Authorization", ""))
    if isinstance(roles, Reply):
        reply = roles
    elif request.path == "/v1.0/$batch" and request.method == "POST":
        fault = svc.faults.take("POST", "/v1.0/$batch")
        reply = _error(fault.status, "TooManyRequests" if fault.status == 429 else "ServiceUnavailable",
                       "Injected fault.", {} if fault.retry_after is None else
                       {"Retry-After": str(int(fault.retry_after))}) if fault else await svc.batch(body, roles)
    else:
        reply = await svc.handle(request.method, request.raw_path, body, roles,  # raw: %23EXT%23 stays encoded
                                 _app_id(request.headers.get("Authorization", "")))
    svc._record(request.method, request.path, reply.status)
    if reply.body is None:
        return web.Response(status=reply.status, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def _app_id(header: str) -> str:
    """The calling app's id from a token `roles` already verified (appid v1, azp v2)."""
    try:
        payload = header.split()[-1].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("appid") or claims.get("azp") or "")
    except (ValueError, IndexError):
        return ""


async def _admin_subscriptions(request: web.Request) -> web.Response:
    return web.json_response(request.app[GRAPH].subscriptions.snapshot())


async def _admin_clock(request: web.Request) -> web.Response:
    """{"advance": seconds}: move the subscriptions' clock (expiries, retries) forward."""
    subs = request.app[GRAPH].subscriptions
    try:
        a = json.loads(await request.read() or b"{}")
        subs.offset += float(a.get("advance", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"need {{\"advance\": seconds}}: {exc}"}, status=400)
    return web.json_response(subs.snapshot())


async def _admin_deliver(request: web.Request) -> web.Response:
    """Deliver the due notifications now (retries included); {"fail": n}: the next n deliveries fail."""
    subs = request.app[GRAPH].subscriptions
    try:
        a = json.loads(await request.read() or b"{}")
        subs.fail_deliveries += int(a.get("fail", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"need {{\"fail\": n}} or nothing: {exc}"}, status=400)
    return web.json_response(await subs.deliver_due())


async def _admin_lifecycle(request: web.Request) -> web.Response:
    """{"event": "subscriptionRemoved"|"reauthorizationRequired", "subscription"?: id (default all)}."""
    svc = request.app[GRAPH]
    try:
        a = json.loads(await request.read() or b"{}")
        event = str(a["event"])
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": f"need event: {exc}"}, status=400)
    if event not in ("subscriptionRemoved", "reauthorizationRequired"):
        return web.json_response({"error": "event must be subscriptionRemoved or reauthorizationRequired"},
                                 status=400)
    sent = svc.subscriptions.lifecycle(a.get("subscription"), event)
    result = await svc.subscriptions.deliver_due()
    return web.json_response({"queued": len(sent), **result})


async def _admin_log(request: web.Request) -> web.Response:
    svc = request.app[GRAPH]
    return web.json_response({"requests": svc.log, "personalInstalls": sorted(svc.world.personal_installs),
                              "teamsApp": {"id": svc.teams_app_id, "externalId": svc.teams_app_external_id}})


async def _admin_reset(request: web.Request) -> web.Response:
    request.app[GRAPH].log.clear()
    request.app[GRAPH].faults.clear()
    return web.json_response({"ok": True})


async def _admin_fail(request: web.Request) -> web.Response:
    try:
        a = json.loads(await request.read() or b"{}")
        request.app[GRAPH].faults.add(Fault(str(a.get("path") or "/v1.0/"), int(a["status"]), int(a.get("count", 1)),
                                            None if a.get("retry_after") is None else float(a["retry_after"]),
                                            a.get("method")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"need path, status, count: {exc}"}, status=400)
    return web.json_response({"ok": True})


async def _admin_application(request: web.Request) -> web.Response:
    """Change a registration as an admin would in the portal (e.g. drop the pre-authorized Teams clients)."""
    try:
        a = json.loads(await request.read() or b"{}")
        app = request.app[GRAPH].applications[str(a.pop("appId")).lower()]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return web.json_response({"error": f"need the appId of a registered application: {exc}"}, status=400)
    app.update(a)
    return web.json_response(app)


def graph_app(svc: GraphService) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[GRAPH] = svc
    app.router.add_route("*", "/v1.0/{tail:.*}", _graph_route)
    app.router.add_get("/_sandbox/graph/log", _admin_log)
    app.router.add_post("/_sandbox/graph/reset", _admin_reset)
    app.router.add_post("/_sandbox/graph/fail", _admin_fail)
    app.router.add_post("/_sandbox/graph/application", _admin_application)
    app.router.add_get("/_sandbox/graph/subscriptions", _admin_subscriptions)
    app.router.add_post("/_sandbox/graph/clock", _admin_clock)
    app.router.add_post("/_sandbox/graph/deliver", _admin_deliver)
    app.router.add_post("/_sandbox/graph/lifecycle", _admin_lifecycle)

    async def _drain(app: web.Application):
        yield
        if svc.tasks:
            await asyncio.gather(*list(svc.tasks), return_exceptions=True)
        await svc.subscriptions.close()
    app.cleanup_ctx.append(_drain)
    return app

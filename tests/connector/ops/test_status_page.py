"""The /admin status page: refused to anonymous users, wrong tokens and forged form posts; in headless Chromium an
admin signs in, sees the data and replays a parked event.

The Chromium tests are skipped without Chromium; they fail instead when ML_REQUIRE_ORACLES=1 (CI)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from connector.store import EventStatus, NewEvent

from .conftest import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"


def _need_chromium() -> None:
    if CHROMIUM is not None:
        return
    if os.environ.get("ML_REQUIRE_ORACLES") == "1":
        pytest.fail("chromium not installed (ML_REQUIRE_ORACLES=1)")
    pytest.skip("chromium not installed")


async def _with_parked_event(svc: Service) -> str:
    store = svc.services.store
    import time

    now = time.time()
    await store.enqueue(NewEvent("prod", "PurchaseOrderConfirmedBusinessEvent", 77, "evt-77", "usmf", {"n": 77}),
                        first_stage="enrich", now=now - 60)
    claim = await store.claim("test", now=now, lease_seconds=60)
    assert claim is not None
    await store.park(claim, reason="enrich: F&O refused the token <b>AADSTS7000215</b>", now=now)
    return claim.event.id


async def _signed_in(svc: Service) -> tuple[aiohttp.CookieJar, str]:
    """Sign in like a browser; returns the cookie jar and the CSRF token the page carries."""
    async with svc.client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    async with svc.client.get("/admin") as r:
        assert r.status == 200
        page = await r.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    return svc.client.session.cookie_jar, csrf.group(1)


async def test_anonymous_users_get_the_sign_in_form_and_no_data(service) -> None:
    svc = await service()
    await svc.box.put("ops/admin-token", ADMIN_TOKEN)
    parked = await _with_parked_event(svc)
    async with svc.client.get("/admin") as r:
        assert r.status == 401
        page = await r.text()
    assert 'id="login"' in page and parked not in page and "AADSTS" not in page
    async with svc.client.post("/admin/replay", data={"event_id": parked, "csrf": "x"}) as r:
        assert r.status == 401
    assert (await svc.services.store.get_event(parked)).status is EventStatus.FAILED


async def test_a_wrong_token_is_refused_and_no_token_means_no_sign_in(service) -> None:
    svc = await service()
    async with svc.client.post("/admin/login", data={"token": ""}, allow_redirects=False) as r:
        assert r.status == 401  # no admin token generated yet: nobody signs in
    await svc.box.put("ops/admin-token", ADMIN_TOKEN)
    async with svc.client.post("/admin/login", data={"token": ADMIN_TOKEN[:-1]}, allow_redirects=False) as r:
        assert r.status == 401 and "Wrong admin token" in await r.text()
    async with svc.client.get("/admin", headers={"Cookie": "mlc_admin=9999999999.abc.forged"}) as r:
        assert r.status == 401


async def test_forged_form_posts_are_refused(service) -> None:
    svc = await service()
    await svc.box.put("ops/admin-token", ADMIN_TOKEN)
    parked = await _with_parked_event(svc)
    _, csrf = await _signed_in(svc)
    # a signed-in admin's browser tricked into posting: no CSRF token, a wrong one, or another site's origin
    for data, headers in (({"event_id": parked}, {}),
                          ({"event_id": parked, "csrf": csrf[:-2] + "xx"}, {}),
                          ({"event_id": parked, "csrf": csrf}, {"Origin": "https://evil.example"})):
        async with svc.client.post("/admin/replay", data=data, headers=headers, allow_redirects=False) as r:
            assert r.status == 403, (data, headers)
    assert (await svc.services.store.get_event(parked)).status is EventStatus.FAILED
    async with svc.client.post("/admin/replay", data={"event_id": parked, "csrf": csrf},
                               allow_redirects=False) as r:
        assert r.status == 303
    assert (await svc.services.store.get_event(parked)).status is EventStatus.QUEUED


async def test_rotating_the_admin_token_ends_sessions(service) -> None:
    svc = await service()
    await svc.box.put("ops/admin-token", ADMIN_TOKEN)
    await _signed_in(svc)
    await svc.box.put("ops/admin-token", ADMIN_TOKEN + "-rotated")
    async with svc.client.get("/admin") as r:
        assert r.status == 401


class _Page:
    """A Chromium tab over the DevTools protocol: evaluate JavaScript (retried across navigations)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.n = 0

    async def evaluate(self, expression: str, *, timeout: float = 30) -> object:
        async with asyncio.timeout(timeout):
            while True:
                self.n += 1
                await self.ws.send_json({"id": self.n, "method": "Runtime.evaluate", "params": {
                    "expression": expression, "awaitPromise": True, "returnByValue": True}})
                msg: dict = {}
                while msg.get("id") != self.n:
                    msg = json.loads((await self.ws.receive()).data)
                result = msg.get("result", {})
                if "exceptionDetails" in result or "error" in msg:  # the page was navigating: ask again
                    await asyncio.sleep(0.1)
                    continue
                return result.get("result", {}).get("value")

    async def until(self, expression: str, *, timeout: float = 30) -> object:
        """Poll a JavaScript condition with a deadline (a page load in between is fine)."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)


@pytest.mark.chromium
async def test_in_chromium_an_admin_signs_in_sees_the_data_and_replays_a_parked_event(service, tmp_path: Path) -> None:
    _need_chromium()
    svc = await service()
    await svc.box.put("ops/admin-token", ADMIN_TOKEN)
    parked = await _with_parked_event(svc)
    assert await svc.post_event(5) == 202  # one more event in the chart
    url = str(svc.client.make_url("/admin"))
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0", url,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ws_url = None
        async with asyncio.timeout(60):
            while ws_url is None:
                line = (await proc.stderr.readline()).decode()
                assert line, "chromium exited before DevTools listened"
                m = re.search(r"DevTools listening on (ws://\S+)", line)
                ws_url = m and m.group(1)
        http_base = "http://" + ws_url.split("/")[2]
        async with aiohttp.ClientSession() as http:
            targets: list = []
            async with asyncio.timeout(30):
                while not targets:
                    targets = [t for t in await (await http.get(http_base + "/json/list")).json()
                               if t.get("type") == "page" and t.get("url", "").startswith(url)]
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = _Page(ws)
                # anonymous: the sign-in form, no data
                assert await page.until("document.querySelector('#login') !== null")
                assert parked not in str(await page.evaluate("document.body.innerText"))
                await page.evaluate(f"document.querySelector('input[name=token]').value = {json.dumps(ADMIN_TOKEN)};"
                                    " document.querySelector('#login').submit(); true")
                await page.until("document.querySelector('#parked') !== null")
                text = str(await page.evaluate("document.body.innerText"))
                assert parked in text and "AADSTS7000215" in text  # the reason, as text (escaped, not markup)
                assert await page.evaluate("document.querySelector('#parked b') === null")
                assert await page.evaluate("document.querySelectorAll('#chart rect.bar').length") == 1
                assert "PurchaseOrderConfirmedBusinessEvent" in str(
                    await page.evaluate("document.querySelector('#chart').textContent"))
                queue = str(await page.evaluate("document.querySelector('#queue').innerText"))
                assert re.search(r"failed\s+1", queue) and re.search(r"queued\s+1", queue)
                for section in ("#upstreams", "#approvals", "#installs", "#pacing", "#delivered"):
                    assert await page.evaluate(f"document.querySelector('{section}') !== null"), section
                await page.evaluate("document.querySelector('form.replay button').click(); true")
                await page.until("document.querySelector('#parked') !== null && "
                                 "document.querySelector('form.replay') === null")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (await svc.services.store.get_event(parked)).status is EventStatus.QUEUED

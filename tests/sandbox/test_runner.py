"""The runner: sandbox.json appears once everything listens, with URLs reachable over real TLS (sandbox CA only)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sandbox.runner import start_sandbox
from sandbox.tls import SandboxCA

ROOT = Path(__file__).resolve().parents[2]


async def fno_token(session: aiohttp.ClientSession, state: dict) -> str:
    """Client credentials against the Entra stand-in, exactly as the connector will ask."""
    url = f"{state['entra']['authority_host']}/{state['tenant_id']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": state["fno"]["client_id"],
            "client_secret": state["fno"]["client_secret"], "scope": state["fno"]["base_url"] + "/.default"}
    async with session.post(url, data=form) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


async def test_start_sandbox_writes_state_and_serves_over_tls(tmp_path):
    running = await start_sandbox(tmp_path, fno_page_size=5)
    try:
        state = json.loads((tmp_path / "sandbox.json").read_text())
        assert state == running.state
        assert Path(state["ca_cert"]) == tmp_path / "ca.pem"
        assert set(state) >= {"ca_cert", "tenant_id", "entra", "fno", "sender"}
        for url in (state["entra"]["authority_host"], state["fno"]["base_url"]):
            assert url.startswith("https://127.0.0.1:") and not url.endswith("/")
        assert state["sender"]["admin_url"] == state["fno"]["base_url"] + "/_sandbox/events"
        tls = ssl.create_default_context(cafile=state["ca_cert"])  # trusts nothing but the sandbox CA
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
            token = await fno_token(session, state)
            base = state["fno"]["base_url"]
            async with session.get(f"{base}/data/SystemUsers", headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json(content_type=None)
                assert r.status == 200 and len(body["value"]) == 5 and "@odata.nextLink" in body
            # the sender reaches an https endpoint signed by the sandbox CA; a scenario operation arrives there
            received: list[dict] = []

            async def events(request: web.Request) -> web.Response:
                received.append(await request.json())
                return web.Response(status=202)
            app = web.Application()
            app.router.add_post("/api/dynamics/events/tok", events)
            ca = SandboxCA(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server-key.pem")
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ca.server_context())
            await site.start()
            admin = state["sender"]["admin_url"]
            url = f"https://127.0.0.1:{runner.addresses[0][1]}/api/dynamics/events/tok"
            async with session.post(f"{admin}/endpoints", json={"url": url}) as r:
                endpoint = await r.json()
            async with session.post(f"{admin}/activate", json={"event_id": "PurchaseOrderConfirmedBusinessEvent",
                                                               "endpoint": endpoint["id"]}) as r:
                assert r.status == 200
            async with session.post(f"{base}/_sandbox/scenario/confirm_po", json={"legal_entity": "demf"}) as r:
                [event] = (await r.json())["events"]
            async with session.post(f"{admin}/drain") as r:
                assert r.status == 200
            assert [e["BusinessEventId"] for e in received] == ["BusinessEventsTestEndpointContract",
                                                                "PurchaseOrderConfirmedBusinessEvent"]
            assert received[1] == event and event["LegalEntity"] == "demf"
            await runner.cleanup()
    finally:
        await running.close()


@pytest.mark.slow
def test_python_m_sandbox_serve_until_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--state-dir", str(tmp_path)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        state_file = tmp_path / "sandbox.json"
        deadline = time.monotonic() + 60
        while not state_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "sandbox.json did not appear"
            time.sleep(0.05)  # polling a subprocess, not waiting for time to pass
        state = json.loads(state_file.read_text())

        async def probe() -> tuple[int, int]:
            tls = ssl.create_default_context(cafile=state["ca_cert"])
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
                async with session.get(f"{state['fno']['base_url']}/data/") as r:
                    fno = r.status  # no token: 401, but over verified TLS
                oidc = f"{state['entra']['authority_host']}/{state['tenant_id']}/v2.0/.well-known/openid-configuration"
                async with session.get(oidc) as r:
                    return fno, r.status
        assert asyncio.run(probe()) == (401, 200)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_thread_runs_on_its_own_loop(tmp_path):
    import urllib.error
    import urllib.request

    from sandbox.runner import SandboxThread
    with SandboxThread(tmp_path) as sb:
        assert (tmp_path / "sandbox.json").exists()
        tls = ssl.create_default_context(cafile=sb.state["ca_cert"])
        url = sb.state["fno"]["admin_url"] + "/fno/stats"
        with urllib.request.urlopen(url, context=tls, timeout=10) as resp:  # noqa: S310 (loopback)
            assert json.load(resp)["requests"] == 0
        sender = sb.running.services["sender"]
        sb.call(sender.drain())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, context=tls, timeout=5)  # noqa: S310 (stopped)

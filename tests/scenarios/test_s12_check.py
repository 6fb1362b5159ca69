"""Item 1 of "ready for a real tenant": `ml-connector check` run as an admin runs it (the installed command, its
own process, configuration from the environment) against a connector that the sandbox Teams installed into
Procurement: every line ✓, exit 0, no secret in its output; then a fault (the app loses its F&O user) gives its ✗
with the fix and exit 1, and --json says the same."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

from aiohttp import web

from connector.demo import free_port
from scenariokit import LeakRegistry, Sandbox, inproc_connector, needles, run_cli, tweak


async def test_check_command_against_the_sandbox(sandbox: Sandbox, workdir: Path,
                                                  leak_registry: LeakRegistry) -> None:
    certs = Path(sandbox.state["ca_cert"]).parent
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    site = web.AppRunner(web.Application())  # our public https front (a reverse proxy in production)
    await site.setup()
    port = free_port()
    await web.TCPSite(site, "127.0.0.1", port, ssl_context=tls).start()
    public = f"https://127.0.0.1:{port}"
    try:
        async with inproc_connector(sandbox, workdir, leak_registry,
                                    lambda s: tweak(s, server={"public_url": public})) as (conn, admin):
            # off the loop: this loop serves the public URL the check connects to
            done = await asyncio.to_thread(run_cli, ["check"], conn)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "✗" not in done.stdout and "!" not in done.stdout.replace("0 warning(s)", "")
            assert "✓ route approvals: team Procurement, channel Approvals" in done.stdout
            assert done.stdout.rstrip().endswith("0 failed, 0 warning(s), 25 passed"), done.stdout
            assert done.stderr == ""  # no TTY: no progress line
            seen = done.stdout + done.stderr
            for value in [*leak_registry.secrets, conn.master_key, conn.event_token]:
                assert not any(n in seen for n in needles(value)), "a secret reached the check's output"

            apps = sandbox.state["fno"]["admin_url"] + "/fno/apps"
            client_id = sandbox.state["fno"]["client_id"]
            saved = next(a for a in await admin.get(apps) if a["client_id"].lower() == client_id.lower())
            await admin.post(apps + "/remove", {"client_id": client_id})
            try:
                env_name = conn.settings.environments[0].name
                bad = await asyncio.to_thread(run_cli, ["check", "--environment", env_name], conn)
                as_json = await asyncio.to_thread(run_cli, ["check", "--json"], conn)
            finally:
                await admin.post(apps, saved)
            assert bad.returncode == 1, bad.stdout
            assert "✗ app's F&O user: F&O refused app" in bad.stdout
            assert "fix: add the app under System administration > Setup > Microsoft Entra ID applications" \
                in bad.stdout
            assert as_json.returncode == 1
            rows = json.loads(as_json.stdout)
            failing = [r for r in rows if r["status"] == "fail"]
            assert [(r["group"], r["item"]) for r in failing] == [("F&O contoso-sandbox", "app's F&O user")]
            assert set(rows[0]) == {"group", "item", "status", "detail", "fix"}

            unknown = await asyncio.to_thread(run_cli, ["check", "--environment", "nope"], conn)
            assert unknown.returncode == 2 and "no environment named 'nope'" in unknown.stderr
    finally:
        await site.cleanup()

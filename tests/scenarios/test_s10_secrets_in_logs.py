"""Issue 4, scenario 10: no secret value ever reaches a log.

Secrets: the F&O client secret, the bot app password, every master key, every events-URL token and the access
tokens the in-process connectors held. Logs: every file the scenario tests wrote (connector logs in-process and
`ml-connector serve`, CLI output, the demo's output) and the sandbox's log. This module runs its own connector at
DEBUG level through the error paths (F&O 429, Teams 429 and 503, refused inbound tokens, a wrong events URL), then
scans everything registered so far in the session; the scanner itself is shown to find a planted value.
"""

from __future__ import annotations

from pathlib import Path

from connector.store import EventStatus
from scenariokit import (ConnectorProcess, LeakRegistry, Sandbox, admin_session, connect, disconnect, needles,
                         prepare, raise_events, reset_sandbox, run_cli, scan_for_secrets, store_of, tweak,
                         wait_finished)


def test_scanner_finds_a_planted_secret(tmp_path: Path, leak_registry: LeakRegistry) -> None:
    secrets = dict(leak_registry.secrets) or {"x-planted-secret-value-123": "planted"}
    clean = tmp_path / "clean.log"
    clean.write_text("2026-11-26 INFO nothing to see here\n")
    assert scan_for_secrets([clean], secrets) == []
    for value, label in secrets.items():
        planted = tmp_path / "planted.log"
        planted.write_text(f"line one\n2026-11-26 WARNING oops: credential={value}; more\n")
        assert scan_for_secrets([clean, planted], {value: label}) == [(str(planted), label, 2)]
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu"
    cut = tmp_path / "cut.log"
    cut.write_text("Authorization: Bearer ...c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu\n")  # only the signature leaked
    assert needles(jwt)[-1] == "c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu"
    assert scan_for_secrets([cut], {jwt: "token"}) == [(str(cut), "token", 1)]


async def test_no_secret_in_any_log(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    def change(s):
        return tweak(s, logging={"level": "DEBUG"})

    conn = await prepare(sandbox, workdir, leak_registry, change)
    proc = ConnectorProcess(conn, leak_registry.log(workdir / "serve-debug.log"))
    async with admin_session(sandbox) as admin, store_of(conn) as store:
        await reset_sandbox(admin, sandbox)
        try:
            proc.start()
            await proc.wait_ready()
            await connect(admin, sandbox, conn)
            # error paths, which are where secrets usually slip into messages
            await admin.post(f"{sandbox.fno_admin}/throttle", {"count": 2, "retry_after": 1})
            await admin.post(f"{sandbox.teams_admin}/fail", {"path": "/v3/conversations", "status": 429, "count": 2,
                                                              "retry_after": 1})
            await admin.post(f"{sandbox.teams_admin}/fail", {"path": "/v3/conversations", "status": 503, "count": 1})
            for defect in ("expired", "wrong_audience", "no_token"):
                await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install", "team": "IT Helpdesk",
                                                                  "defect": defect})
            async with admin.http.post(f"{conn.base_url}/api/dynamics/events/{conn.event_token}x", json={}) as r:
                assert r.status == 404
            payloads = await raise_events(admin, sandbox, "month_end", 1)
            records = await wait_finished(store, payloads, 90)
            assert all(r.status is EventStatus.DONE for r in records.values()), \
                [(r.status, r.last_error) for r in records.values()]

            cli_out = leak_registry.log(workdir / "cli-output.log")
            some_id = next(iter(records.values())).id
            with open(cli_out, "w") as f:
                for args in (["secrets", "list"], ["events", "list"], ["events", "show", some_id, "--payload"],
                             ["config", "check"]):
                    done = run_cli(args, conn)
                    assert done.returncode == 0, (args, done.stderr)
                    f.write(done.stdout + done.stderr)
        finally:
            try:
                await disconnect(admin, sandbox, conn)
                await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "uninstall", "team": "IT Helpdesk",
                                                                  "silent": True})
            finally:
                proc.stop()
                await reset_sandbox(admin, sandbox)

    logs = [p for p in leak_registry.logs if p.is_file()]
    assert (workdir / "serve-debug.log").stat().st_size > 1000  # DEBUG really logged something to scan
    assert sandbox.log_path in logs and len(leak_registry.secrets) >= 4
    leaks = scan_for_secrets(logs, leak_registry.secrets)
    print(f"\nscanned {len(logs)} log files ({sum(p.stat().st_size for p in logs):,} bytes) for "
          f"{len(leak_registry.secrets)} secret values: {len(leaks)} found")
    assert not leaks, leaks

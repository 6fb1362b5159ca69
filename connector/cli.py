"""The `ml-connector` command line: serve, inspect and replay events, manage secrets, preview cards, demo.

Every command reads the same configuration as the service (`--config`, $ML_CONFIG, ./ml-connector.toml) and
says what to do when something is wrong (exit 2: configuration or usage, and whatever stops `serve` from starting,
in one line; exit 3: the store or a service is unreachable for the other commands). Secret values are read from
standard input or a hidden prompt, never from the command line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, TypeVar

import click

from connector.config import ConfigError, Settings, ignored_environment_variables, load_settings

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    if "settings" not in ctx.obj:
        try:
            ctx.obj["settings"] = load_settings(ctx.obj.get("config"))
        except ConfigError as exc:
            _fail(str(exc))
    return ctx.obj["settings"]


def _run(coro: Awaitable[T]) -> T:
    from connector.secrets import SecretsError
    from connector.store import StoreInsecure, StoreUnavailable

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (StoreInsecure, ConfigError) as exc:  # the message says what to run or change
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(f"the store is unavailable: {exc}. Check [store].url and that the database is reachable.", 3)
    except SecretsError as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Any]:
    from connector.app import configured_store

    try:
        store = configured_store(settings)
    except ConfigError as exc:
        _fail(str(exc))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
@click.version_option(package_name="ml-connector", prog_name="ml-connector")  # from the installed package metadata
@click.option("--config", "-c", type=click.Path(dir_okay=False),
              help="TOML file (default $ML_CONFIG or ./ml-connector.toml)")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """ml-connector: Dynamics 365 F&O business events and approvals in Microsoft Teams."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


# --- serve ------------------------------------------------------------------------------------------------
@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the service (events endpoint, pipeline, bot) until interrupted."""
    from connector.app import StartupError, run_service
    from connector.store import StoreInsecure

    settings = _settings(ctx)
    try:
        run_service(settings)
    except (ConfigError, StartupError, StoreInsecure) as exc:  # one clear line (a list for several problems)
        _fail(str(exc))


@main.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate the configuration file and environment overrides (every check `serve` makes), then summarise."""
    from connector.validation import validate_settings

    s = _settings(ctx)
    try:
        validated = validate_settings(s)
    except ConfigError as exc:
        _fail(str(exc))
    for warning in validated.warnings:
        click.echo(f"warning: {warning}")
    ignored = ignored_environment_variables(os.environ)
    if ignored:  # names only: a value could be anyone's secret
        click.echo(f"note: ignored environment variables (no such configuration section): {', '.join(ignored)}")
    click.echo(f"configuration ok: {len(s.environments)} environment(s), store {s.store.url.split('://')[0]}, "
               f"cloud {s.cloud.name}")


@main.command("check")
@click.option("--environment", "-e", "environment", metavar="NAME", help="check only this F&O environment")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of {group, item, status, detail, fix}")
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds each network call may take")
@click.pass_context
def check(ctx: click.Context, environment: str | None, as_json: bool, timeout: float) -> None:
    """Ping F&O, Entra ID, Graph and Teams with the configured credentials: one line per item (✓ ✗ !), each ✗
    with its fix. Exit 0 when nothing failed (warnings do not fail)."""
    import logging

    from connector.check import (CheckResult, ProgressLine, Status, UnknownEnvironment, failed, render_json,
                                 render_text, run_checks)

    logging.getLogger().addHandler(logging.NullHandler())  # the checklist says it all; no stray log lines
    try:
        settings = load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        results = [CheckResult("Configuration", "settings", Status.FAIL, str(exc).replace("\n", " "),
                               "correct the keys named above (README.md, Configuration).")]
    else:
        progress = ProgressLine()
        try:
            results = asyncio.run(run_checks(settings, environment=environment, progress=progress, timeout=timeout))
        except UnknownEnvironment as exc:
            _fail(str(exc))
        finally:
            progress.clear()
    click.echo(render_json(results) if as_json else render_text(results))
    sys.exit(1 if failed(results) else 0)


# --- events -----------------------------------------------------------------------------------------------
@main.group()
def events() -> None:
    """Inspect and replay business events."""


@events.command("list")
@click.option("--status", type=click.Choice(["queued", "processing", "done", "failed", "ignored"]))
@click.option("--limit", default=30, show_default=True)
@click.pass_context
def events_list(ctx: click.Context, status: str | None, limit: int) -> None:
    """List the newest events (and their state)."""
    from connector.store import EventStatus

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            counts = await store.count_by_status()
            rows = await store.list_events(status=EventStatus(status) if status else None, limit=limit)
        click.echo("  ".join(f"{k.value}={v}" for k, v in sorted(counts.items(), key=lambda kv: kv[0].value))
                   or "no events")
        for r in rows:
            click.echo(f"{r.id}  {_when(r.received_at)}  {r.status.value:<10} {r.stage or '-':<8} "
                       f"{r.environment}/{r.legal_entity or '-'}  {r.business_event_id}  #{r.control_number}"
                       + (f"  [{r.last_error}]" if r.last_error and r.status.value == "failed" else ""))

    _run(go())


@events.command("show")
@click.argument("event_id")
@click.option("--payload/--no-payload", default=False, help="also print the event as F&O sent it")
@click.pass_context
def events_show(ctx: click.Context, event_id: str, payload: bool) -> None:
    """Print one event with its history."""

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            r = await store.get_event(event_id)
            if r is None:
                _fail(f"no event with id {event_id} (see `ml-connector events list`)", 1)
            history = await store.history(event_id)
            cards = await store.cards_for_event(event_id)
        click.echo(f"event      {r.id}")
        click.echo(f"type       {r.business_event_id}")
        click.echo(f"from       {r.environment} / {r.legal_entity or '-'}  ControlNumber {r.control_number}  "
                   f"EventId {r.event_id}")
        click.echo(f"status     {r.status.value}" + (f" at stage {r.stage}" if r.stage else "")
                   + (f" (attempt {r.attempts})" if r.attempts else ""))
        if r.last_error:
            click.echo(f"last error {r.last_error}")
        for c in cards:
            click.echo(f"card       {c.kind} in {c.conversation_id} (message {c.activity_id}, route {c.route})")
        click.echo("history:")
        for h in history:
            click.echo(f"  {_when(h.at)}  {h.step:<10} {h.outcome:<10} {h.detail}")
        if payload:
            click.echo(json.dumps(r.payload, indent=2, ensure_ascii=False))

    _run(go())


@events.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="re-queue every failed event")
@click.option("--stage", help="restart at this stage (default: where it stopped)")
@click.pass_context
def events_replay(ctx: click.Context, event_ids: tuple[str, ...], all_failed: bool, stage: str | None) -> None:
    """Re-queue failed events (a running service picks them up within its poll interval)."""
    from connector.store import EventStatus, NotFound

    if not event_ids and not all_failed:
        _fail("name event ids or pass --all-failed")

    async def go() -> None:
        import time

        async with _store(_settings(ctx)) as store:
            ids = list(event_ids)
            if all_failed:
                ids += [r.id for r in await store.list_events(status=EventStatus.FAILED, limit=100_000)]
            for eid in ids:
                try:
                    r = await store.replay(eid, now=time.time(), stage=stage)
                except NotFound:
                    _fail(f"no event with id {eid}", 1)
                click.echo(f"re-queued {r.id} at stage {r.stage}")

    _run(go())


_AGE_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_age(text: str) -> float:
    """'90d', '12h', '30m', '45s' (or plain seconds) -> seconds."""
    value = text.strip().lower()
    unit = _AGE_UNITS.get(value[-1:], None)
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an age: give e.g. 90d, 12h, 30m or 3600") from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r}: the age must be more than zero")
    return seconds


@events.command("purge")
@click.option("--older-than", "older_than", required=True, help="age, e.g. 90d, 12h (days, hours, minutes, seconds)")
@click.option("--audit", "with_audit", is_flag=True, help="also delete approval audit entries older than that")
@click.pass_context
def events_purge(ctx: click.Context, older_than: str, with_audit: bool) -> None:
    """Delete done and ignored events (with their payloads and history) older than --older-than. Parked and
    unfinished events are kept; the approval audit log only with --audit."""
    age = parse_age(older_than)

    async def go() -> None:
        import time

        async with _store(_settings(ctx)) as store:
            before = time.time() - age
            purged = await store.purge_events(before=before)
            click.echo(f"purged {purged} done event(s) older than {older_than}")
            if with_audit:
                click.echo(f"purged {await store.purge_audit(before=before)} audit entr(ies) older than {older_than}")

    _run(go())


@main.group("store")
def store_group() -> None:
    """The event store."""


@store_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def store_backup(ctx: click.Context, file: str) -> None:
    """Copy the SQLite store to FILE (a new file, mode 600) while the service runs (SQLite's online backup).
    MongoDB: use mongodump (README "Operating it")."""
    from connector.store import StoreError

    if Path(file).exists():
        _fail(f"{file} exists: give a new file name (a backup never overwrites)", 1)

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            try:
                await store.backup(file)
            except StoreError as exc:
                _fail(str(exc), 1)
        click.echo(f"backed up the store to {file}")

    _run(go())


@main.group("ops")
def ops_group() -> None:
    """Operating the service: the status page's and /metrics' tokens."""


def _generated_token(ctx: click.Context, which: str, rotate: bool) -> None:
    import secrets as pysecrets

    settings = _settings(ctx)
    name = settings.ops.admin_token_secret if which == "admin" else settings.ops.metrics_token_secret

    async def go() -> None:
        from connector.secrets import SecretNotFound

        async with _store(settings) as store:
            box = _box(store)
            try:
                await box.get(name)
                if not rotate:
                    _fail(f"a {which} token exists (secret {name}); pass --rotate to replace it", 1)
            except SecretNotFound:
                pass
            token = pysecrets.token_urlsafe(32)
            await box.put(name, token)
        # printed once, on purpose: the admin copies it now (it is never logged)
        click.echo(token)
        click.echo(f"stored as secret {name}" + ("; sessions signed with the old token end now" if which == "admin"
                                                 else ""), err=True)

    _run(go())


@ops_group.command("admin-token")
@click.option("--rotate", is_flag=True, help="replace the existing token")
@click.pass_context
def ops_admin_token(ctx: click.Context, rotate: bool) -> None:
    """Generate the status page's admin token (/admin), store it encrypted and print it once."""
    _generated_token(ctx, "admin", rotate)


@ops_group.command("metrics-token")
@click.option("--rotate", is_flag=True, help="replace the existing token")
@click.pass_context
def ops_metrics_token(ctx: click.Context, rotate: bool) -> None:
    """Generate the bearer token for /metrics on the public listener ([ops] metrics_port = 0)."""
    _generated_token(ctx, "metrics", rotate)


# --- secrets ----------------------------------------------------------------------------------------------
@main.group()
def secrets() -> None:
    """Encrypted secrets (client secrets, certificate keys, endpoint tokens). Values never leave as output."""


def _box(store: Any) -> Any:
    from connector.secrets import SecretBox, master_key_from_environment

    return SecretBox(store, master_key_from_environment())


@secrets.command("set")
@click.argument("name")
@click.option("--from-file", type=click.Path(exists=True, dir_okay=False), help="read the value from a file (PEM keys)")
@click.pass_context
def secrets_set(ctx: click.Context, name: str, from_file: str | None) -> None:
    """Store NAME; the value comes from --from-file, standard input, or a hidden prompt."""
    if from_file:
        value = Path(from_file).read_text(encoding="utf-8")
    elif not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = click.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        _fail("empty value: nothing stored")

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            await _box(store).put(name, value)
        click.echo(f"stored secret {name}")

    _run(go())


@secrets.command("list")
@click.pass_context
def secrets_list(ctx: click.Context) -> None:
    """Names, key ids and dates; never values."""

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            items = await _box(store).list()
        if not items:
            click.echo("no secrets stored")
        for s in items:
            click.echo(f"{s.name:<40} key {s.key_id}  created {_when(s.created_at)}  updated {_when(s.updated_at)}")

    _run(go())


@secrets.command("delete")
@click.argument("name")
@click.pass_context
def secrets_delete(ctx: click.Context, name: str) -> None:
    """Delete NAME."""

    from connector.secrets import SecretNotFound

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            try:
                await _box(store).delete(name)
            except SecretNotFound:
                _fail(f"no secret named {name} (see `ml-connector secrets list`)", 1)
        click.echo(f"deleted {name}")

    _run(go())


@secrets.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new master key (store it in your secret manager; set ML_MASTER_KEY or ML_MASTER_KEY_FILE)."""
    from connector.secrets import generate_master_key

    click.echo(generate_master_key())


@secrets.command("rotate-key")
@click.option("--new-key-file", type=click.Path(exists=True, dir_okay=False), required=True,
              help="file holding the new master key (from `secrets generate-key`)")
@click.pass_context
def secrets_rotate_key(ctx: click.Context, new_key_file: str) -> None:
    """Re-encrypt every secret under a new master key (the current one must be set)."""
    from connector.secrets import MasterKey

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            box = _box(store)
            count = await box.rotate(MasterKey.from_file(Path(new_key_file)))
        click.echo(f"re-encrypted {count} secret(s); now set ML_MASTER_KEY_FILE={new_key_file}")

    _run(go())


# --- environments -----------------------------------------------------------------------------------------
@main.group()
def environments() -> None:
    """F&O environments."""


@environments.command("endpoint")
@click.argument("name")
@click.option("--rotate", is_flag=True,
              help="replace the token; the previous URL stays valid for environments[].event_token_grace seconds")
@click.option("--revoke-previous", is_flag=True, help="end the previous URL's grace period now")
@click.pass_context
def environments_endpoint(ctx: click.Context, name: str, rotate: bool, revoke_previous: bool) -> None:
    """Create (or rotate) the secret events URL for environment NAME and print it, for F&O's Key Vault.

    A running service picks up a new, rotated or revoked token by itself (within a minute for a revocation)."""
    import time

    from connector import endpoint_tokens

    settings = _settings(ctx)
    try:
        env = settings.environment(name)
    except KeyError:
        _fail(f"no environment named {name} in the configuration ([[environments]])")

    async def go() -> None:
        async with _store(settings) as store:
            box = _box(store)
            if rotate:
                token, replaced = await endpoint_tokens.rotate(box, env.event_secret_name, now=time.time())
                if replaced and not revoke_previous:
                    until = _when(time.time() + env.event_token_grace)
                    click.echo(f"rotated; the previous URL stays valid until {until} UTC "
                               f"(event_token_grace); end it sooner with --revoke-previous", err=True)
            else:
                token, created = await endpoint_tokens.ensure_token(box, env.event_secret_name)
                if not created and not revoke_previous:
                    click.echo("(existing token; pass --rotate to replace it)", err=True)
            if revoke_previous:
                if await endpoint_tokens.revoke_previous(box, env.event_secret_name):
                    click.echo("revoked the previous URL; a running service refuses it within a minute", err=True)
                else:
                    click.echo("there was no previous URL to revoke", err=True)
        click.echo(_events_url(settings, token))

    _run(go())


def _events_url(settings: Settings, token: str) -> str:
    """The URL F&O must call; a warning instead of a made-up address when [server].public_url is missing or not
    https (a bind address such as 0.0.0.0 is not where F&O reaches us, and F&O requires https)."""
    path = f"/api/dynamics/events/{token}"
    public = settings.server.public_url
    if not public:
        click.echo("warning: [server].public_url is not set, so the address F&O reaches this service at is unknown: "
                   "put that https address before the path below (and set public_url)", err=True)
        return path
    if not public.lower().startswith("https://"):
        click.echo(f"warning: [server].public_url {public} is not https; F&O sends business events only to https "
                   "endpoints", err=True)
    return public.rstrip("/") + path


# --- Teams installs ---------------------------------------------------------------------------------------
@main.group()
def installs() -> None:
    """Where the Teams app is installed (recorded from the bot's install events)."""


@installs.command("list")
@click.option("--all", "show_all", is_flag=True, help="include uninstalled teams and chats")
@click.pass_context
def installs_list(ctx: click.Context, show_all: bool) -> None:
    """Teams (with their channels), personal and group chats."""

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            rows = await store.list_installs(active_only=not show_all)
        if not rows:
            click.echo("the app is not installed anywhere yet (add it to a team in Teams)")
        for i in rows:
            state = "" if i.active else "  [uninstalled]"
            if i.scope == "team":
                click.echo(f"team {i.team_name or '?'}  ({i.team_id}, group {i.aad_group_id or '?'}){state}")
                for cid, name in sorted(i.channels.items(), key=lambda kv: kv[1].lower()):
                    click.echo(f"    #{name:<24} {cid}")
            else:
                who = i.user_aad_object_id or i.conversation_id
                click.echo(f"{i.scope} {who}  (since {_when(i.installed_at)}){state}")

    _run(go())


# --- approvals --------------------------------------------------------------------------------------------
@main.group()
def approvals() -> None:
    """F&O workflow approvals decided from Teams, and their audit log."""


@approvals.command("list")
@click.option("--status", type=click.Choice(["pending", "submitting", "decided", "closed", "superseded"]))
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def approvals_list(ctx: click.Context, status: str | None, limit: int) -> None:
    """Tracked approvals: work item, assignee, state, decision."""
    from connector.approvals import list_approvals_text

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            click.echo(await list_approvals_text(store, status=status, limit=limit) or "no approvals tracked yet")

    _run(go())


@approvals.command("show")
@click.argument("environment")
@click.argument("work_item_id")
@click.pass_context
def approvals_show(ctx: click.Context, environment: str, work_item_id: str) -> None:
    """One approval with its audit log (every press, refusal, decision and F&O's answer)."""
    from connector.approvals import show_approval

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            click.echo(await show_approval(store, environment, work_item_id))

    _run(go())


# --- Graph subscriptions (typed replies) -------------------------------------------------------------------
@main.group()
def subscriptions() -> None:
    """Graph change-notification subscriptions for the channels that receive approval cards (typed replies)."""


@subscriptions.command("list")
@click.pass_context
def subscriptions_list(ctx: click.Context) -> None:
    """Each subscription: channel resource, Graph id, status, expiry, last renewal, notification and resync."""
    from connector.replies.admin import list_text

    async def go() -> None:
        async with _store(_settings(ctx)) as store:
            click.echo(list_text(await store.list_graph_subscriptions()))

    _run(go())


@subscriptions.command("sync")
@click.pass_context
def subscriptions_sync(ctx: click.Context) -> None:
    """Create, renew or drop subscriptions now (what `serve` does every [replies] tick)."""
    from connector.replies.admin import manager_for

    settings = _settings(ctx)

    async def go() -> None:
        async with _store(settings) as store, manager_for(settings, store, _box(store)) as manager:
            done = await manager.sync()
        click.echo(", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "nothing to do: all subscriptions "
                   "are current")

    _run(go())


@subscriptions.command("delete")
@click.argument("resource", required=False)
@click.option("--all", "delete_all", is_flag=True, help="delete every subscription")
@click.pass_context
def subscriptions_delete(ctx: click.Context, resource: str | None, delete_all: bool) -> None:
    """Delete a subscription (by its resource or Graph id) at Graph and in the store. `serve` re-creates it while
    its channel still receives approval cards; set [replies] source = "bot" to stop for good."""
    from connector.replies.admin import delete, manager_for

    if bool(resource) == delete_all:
        _fail("name one subscription (its resource or id, see `subscriptions list`) or give --all")
    settings = _settings(ctx)

    async def go() -> None:
        async with _store(settings) as store, manager_for(settings, store, _box(store)) as manager:
            done = await delete(manager, store, None if delete_all else resource)
        if not done:
            _fail(f"no subscription {resource!r}: see `ml-connector subscriptions list`")
        click.echo("\n".join(done))

    _run(go())


# --- cards ------------------------------------------------------------------------------------------------
@main.group()
def cards() -> None:
    """Adaptive Card templates."""


@cards.command("preview")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="preview", show_default=True)
@click.option("--template", "names", multiple=True, help="only these templates (default: all)")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="card data (JSON) to use instead of the sample data")
@click.pass_context
def cards_preview(ctx: click.Context, out_dir: str, names: tuple[str, ...], data_file: str | None) -> None:
    """Render every template (or some) with sample data into HTML pages, and PNG where Chromium is installed."""
    from cards.catalog import Catalog
    from cards.preview import write_preview

    settings = _settings(ctx)
    catalog = Catalog.load(settings.cards.template_dir)
    results = write_preview(Path(out_dir), catalog, names=list(names) or None,
                            data_file=Path(data_file) if data_file else None)
    failed = False
    for r in results:
        picture = r.png or r.html
        notes = []
        if r.warnings:
            notes.append(f"{len(r.warnings)} renderer warning(s): {'; '.join(map(str, r.warnings))[:200]}")
        if r.problems:
            notes.append(f"problems: {'; '.join(map(str, r.problems))[:200]}")
        failed = failed or bool(r.warnings or r.problems)
        click.echo(f"{r.name:<26} {picture}  ({r.bytes / 1000:.1f} KB)" + (f"  {' | '.join(notes)}" if notes else ""))
    if results and not any(r.png for r in results):
        click.echo("(install Chromium to also get PNG pictures; the HTML pages render in any browser)")
    click.echo(f"index: {Path(out_dir) / 'index.html'}")
    if failed:
        sys.exit(1)


# --- Teams app package ------------------------------------------------------------------------------------
from connector.manifest import manifest_group  # noqa: E402  (the group is defined beside the package builder)

main.add_command(manifest_group)


# --- demo -------------------------------------------------------------------------------------------------
@main.command()
@click.option("--once", is_flag=True, help="play the scenario, check every event reached its card, and exit")
@click.option("--burst", default=60, show_default=True, help="size of the burst that turns into digest cards")
@click.option("--keep", is_flag=True, help="keep the temporary folder (store, sandbox state and logs)")
def demo(once: bool, burst: int, keep: bool) -> None:
    """Run the whole product against the local sandbox, with no configuration."""
    from connector.demo import run_demo

    sys.exit(run_demo(once=once, burst=burst, keep=keep))

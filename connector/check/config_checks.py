"""Configuration group: the validation `serve` runs, the master key, the store, every named secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from connector.check.context import CheckContext
from connector.check.model import Reporter
from connector.config import ConfigError
from connector.secrets import (MasterKey, MasterKeyError, SecretNotFound, SecretsError, WrongMasterKey,
                               master_key_from_environment)
from connector.teams_config import teams_settings
from connector.token_wiring import CredentialRef, bot_credential, environment_credential, load_ref
from dynamics import DynamicsError

GROUP = "Configuration"


async def run(ctx: CheckContext, r: Reporter) -> None:
    _settings(ctx, r)
    key = _master_key(ctx, r)
    if ctx.tokens is None:
        r.fail("[cloud] authority_host", f"{ctx.settings.cloud.endpoint('authority_host')!r} is not an https URL",
               "set [cloud] authority_host to the https login host of your cloud (or leave it out for public).")
    if not await _store(ctx, r) or key is None:
        return
    from connector.secrets import SecretBox

    ctx.box = SecretBox(ctx.store, key)
    refs: dict[str, CredentialRef] = {}
    for env in ctx.settings.environments:
        ref = environment_credential(ctx.settings, env)
        refs.setdefault(ref.name, ref)
    if ctx.teams is not None and ctx.teams.enabled:
        ref = bot_credential(ctx.settings, ctx.teams)
        refs.setdefault(ref.name, ref)
    for ref in refs.values():
        await _credential(ctx, r, ref)
    for env in ctx.settings.environments:
        await _event_token(ctx, r, env.name, env.event_secret_name)


def _settings(ctx: CheckContext, r: Reporter) -> None:
    from connector.validation import validate_settings

    r.starting("settings")
    try:
        ctx.teams = teams_settings(ctx.settings)
    except ConfigError:
        ctx.teams = None
    try:
        validated = validate_settings(ctx.settings)
    except (ConfigError, DynamicsError, ValueError) as exc:
        fix = ("correct that key in the configuration file (README.md, Configuration); "
               "`serve` refuses to start until then.")
        for problem in getattr(exc, "problems", None) or [str(exc).replace("\n", " ")]:
            r.fail("settings", problem, fix)
        return
    for warning in validated.warnings:
        r.warn("settings", warning, "see README.md, Configuration; `serve` starts, but says the same in its log.")
    s = ctx.settings
    r.ok("settings", f"{len(s.environments)} F&O environment(s), {len(s.routes)} route(s), "
                     f"Teams {'on' if ctx.teams and ctx.teams.enabled else 'off'}")
    if not s.environments:
        r.warn("environments", "no [[environments]] configured: no business events will be accepted",
               "add an [[environments]] entry with name and base_url for each F&O environment.")


def _master_key(ctx: CheckContext, r: Reporter) -> MasterKey | None:
    r.starting("master key")
    if ctx.master_key is not None:
        r.ok("master key", "given by the caller")
        return ctx.master_key
    env = ctx.environ
    path = env.get("ML_MASTER_KEY_FILE")
    if not env.get("ML_MASTER_KEY") and path:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            r.fail("master key", f"ML_MASTER_KEY_FILE {path}: {exc.strerror}",
                   "point ML_MASTER_KEY_FILE at the file holding the master key (`secrets generate-key`).")
            return None
        if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
            r.fail("master key file mode", f"{path} has mode {mode:04o}: others can read it or others/group can "
                   "write it", f"run `chmod 600 {path}` (and make the service's user its owner).")
            return None
        if mode & stat.S_IRGRP:
            r.warn("master key file mode", f"{path} is group-readable (mode {mode:04o})", f"run `chmod 600 {path}`.")
        else:
            r.ok("master key file mode", f"{Path(path).name}: mode {mode:04o}")
    try:
        key = master_key_from_environment(env)
    except (MasterKeyError, SecretsError) as exc:
        r.fail("master key", str(exc), "set ML_MASTER_KEY_FILE (or ML_MASTER_KEY) to the key the secrets were "
               "stored with; a new install makes one with `ml-connector secrets generate-key`.")
        return None
    r.ok("master key", f"key id {key.key_id}")
    return key


async def _store(ctx: CheckContext, r: Reporter) -> bool:
    from connector.store.factory import open_store
    from connector.store import StoreUnavailable

    url = ctx.settings.store.url
    kind = url.split("://")[0]
    try:
        store = open_store(url)
        await r.bounded("store", store.open())
    except Exception as exc:  # noqa: BLE001 - StoreUnavailable, driver errors, CheckTimeout: all one answer
        detail = str(exc) if isinstance(exc, StoreUnavailable) else f"{type(exc).__name__}: {exc}"
        r.fail("store", f"{kind} store unavailable: {detail}",
               "check [store].url and that the database is reachable from here.")
        return False
    ctx.store = store
    r.ok("store", f"{kind} store opened")
    return True


async def _credential(ctx: CheckContext, r: Reporter, ref: CredentialRef) -> None:
    item = f"secret {ref.name}"
    r.starting(item)
    assert ctx.box is not None
    try:
        ctx.credentials[ref.name] = await load_ref(ctx.box, ref)
    except ConfigError:
        how = f"`ml-connector secrets set {ref.name} --from-file KEY.pem`" if ref.kind == "certificate" else \
            f"`ml-connector secrets set {ref.name}` (it reads the value from stdin or a hidden prompt)"
        r.fail(item, f"the {ref.kind} credential of {ref.owner} is not stored", f"store it with {how}.")
        return
    except WrongMasterKey as exc:
        r.fail(item, str(exc), "set the master key the secrets were stored with (ML_MASTER_KEY_FILE), or store "
               "them again under this one.")
        return
    except SecretsError as exc:
        r.fail(item, f"cannot decrypt: {exc}", f"store it again with `ml-connector secrets set {ref.name}`.")
        return
    except ValueError as exc:  # a certificate key that is not an unencrypted PEM key
        r.fail(item, str(exc), f"store the PEM private key with `ml-connector secrets set {ref.name} "
               "--from-file KEY.pem`.")
        return
    r.ok(item, f"{ref.kind} for {ref.owner} decrypts")


async def _event_token(ctx: CheckContext, r: Reporter, env_name: str, secret: str) -> None:
    item = f"events URL of {env_name}"
    r.starting(item)
    assert ctx.box is not None
    try:
        await ctx.box.get(secret)
    except SecretNotFound:
        r.fail(item, f"no events URL token stored ({secret}): F&O's business events would be refused",
               f"run `ml-connector environments endpoint {env_name}` and put the URL it prints into the Key Vault "
               "secret F&O's business events endpoint reads.")
        return
    except SecretsError as exc:
        r.fail(item, f"cannot decrypt {secret}: {exc}", f"rotate it: `ml-connector environments endpoint "
               f"{env_name} --rotate`, then update the Key Vault secret.")
        return
    r.ok(item, f"token stored in {secret}")

"""Secrets at rest: AES-256-GCM under a master key, stored as ciphertext through the Store; plus the `Secret` value
type and a logging filter so that a secret value never reaches a log line, an error message or a repr.

Ciphertext layout: version byte (1) | 96-bit random nonce | AES-GCM ciphertext and tag. The associated data is the
version byte followed by the secret's name (UTF-8), so a ciphertext copied under another name fails to decrypt.
The store keeps, beside it, the id of the master key that encrypted it (first 12 hex digits of SHA-256 of the key):
a wrong key is reported as such (WrongMasterKey) instead of as an opaque authentication failure.

Master key: urlsafe base64 of 32 random bytes (`generate_master_key()`), given as text (the value of
ML_MASTER_KEY, read by connector/config.py) or as a key file. A key file that others can read, or that group or
others can write, is refused (like ssh's private keys; `chmod 600`); a group-readable one is accepted with a warning.
`insecure_ok=True` turns the refusal into a warning for platforms that cannot set modes.

Knows nothing of HTTP, F&O or Teams; reads no environment of its own.
"""

from __future__ import annotations

import base64
import builtins
import binascii
import hashlib
import hmac
import logging
import os
import secrets as _random
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connector.store.base import Store

__all__ = [
    "CorruptSecret", "MasterKey", "MasterKeyError", "RedactingFilter", "Secret", "SecretBox", "SecretInfo",
    "SecretNotFound", "SecretsError", "WrongMasterKey", "generate_master_key", "install_redaction",
]

log = logging.getLogger(__name__)

VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
ENV_VAR = "ML_MASTER_KEY"


# --- errors ---------------------------------------------------------------------------------------------------
class SecretsError(Exception):
    """Root of this module's errors. Messages name secrets and key ids, never values."""


class SecretNotFound(SecretsError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no secret named {name!r}")
        self.name = name


class MasterKeyError(SecretsError):
    """The master key is malformed, missing, or its file is not private enough."""


class WrongMasterKey(SecretsError):
    """The secret was encrypted under a master key we do not hold."""

    def __init__(self, name: str, have: Iterable[str], needed: str) -> None:
        have = list(have)
        ids = " or ".join(f"id {k}" for k in have)
        super().__init__(
            f"the master key ({ids}) does not match the key that encrypted secret {name!r} (id {needed}); "
            f"set {ENV_VAR} to the key used when it was stored")
        self.name, self.have, self.needed = name, have, needed


class CorruptSecret(SecretsError):
    """The ciphertext is damaged, was altered, or was moved from another name (the key itself is right)."""


# --- values ---------------------------------------------------------------------------------------------------
class Secret:
    """A secret string that shows as Secret('***') in repr, str, f-strings and logs. `.reveal()` gives the value.

    Not picklable (so it does not slip into a job payload or a cache); equality is constant-time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # a hash would leak equality with guessed values

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # noqa: ANN204
        raise TypeError("a Secret cannot be pickled")


def generate_master_key() -> str:
    """A new master key: urlsafe base64 of 32 random bytes (44 characters)."""
    return base64.urlsafe_b64encode(_random.token_bytes(KEY_BYTES)).decode("ascii")


class MasterKey:
    """A 256-bit AES key with a printable id (first 12 hex of its SHA-256). repr shows only the id."""

    __slots__ = ("_key", "key_id")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes, got {len(raw)}")
        self._key = bytes(raw)
        self.key_id = hashlib.sha256(self._key).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self):  # noqa: ANN204
        raise TypeError("a MasterKey cannot be pickled")

    @classmethod
    def from_text(cls, text: str | Secret, *, source: str = ENV_VAR) -> MasterKey:
        """Decode the urlsafe base64 text of a key. `source` names where it came from in error messages."""
        value = (text.reveal() if isinstance(text, Secret) else text).strip()
        if not value:
            raise MasterKeyError(f"{source} is empty; create a key with generate_master_key()")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"{source} is not urlsafe base64 (expected 32 random bytes)") from None
        if len(raw) != KEY_BYTES:
            raise MasterKeyError(f"{source} decodes to {len(raw)} bytes; a master key is {KEY_BYTES} bytes")
        return cls(raw)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], name: str = ENV_VAR) -> MasterKey:
        """The key in `environ[name]` (pass the mapping you read configuration from)."""
        if not environ.get(name):
            raise MasterKeyError(f"{name} is not set")
        return cls.from_text(environ[name], source=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, insecure_ok: bool = False) -> MasterKey:
        """Read a key file (same encoding; surrounding whitespace ignored).

        Raises:
            MasterKeyError: unreadable, malformed, or readable by others / writable by group or others
                (unless insecure_ok, which only warns).
        """
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise MasterKeyError(f"cannot read master key file {p}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"master key file {p} is not a regular file")
        if os.name == "posix":
            mode = stat.S_IMODE(st.st_mode)
            if mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
                msg = (f"master key file {p} has mode {mode:04o}: others can read it or others/group can write "
                       f"it; run `chmod 600 {p}`")
                if not insecure_ok:
                    raise MasterKeyError(msg)
                log.warning("%s (accepted: insecure_ok)", msg)
            elif mode & stat.S_IRGRP:
                log.warning("master key file %s is group-readable (mode %04o); prefer chmod 600", p, mode)
        try:
            text = p.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise MasterKeyError(f"cannot read master key file {p}: {exc}") from None
        return cls.from_text(text, source=f"master key file {p}")

    # encryption primitives ------------------------------------------------------------------------------------
    def seal(self, name: str, value: str) -> bytes:
        nonce = _random.token_bytes(NONCE_BYTES)
        return bytes([VERSION]) + nonce + AESGCM(self._key).encrypt(nonce, value.encode("utf-8"), _aad(name))

    def open(self, name: str, blob: bytes) -> str:
        """Raises InvalidTag (the caller translates it) or CorruptSecret for a malformed blob."""
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[0] != VERSION:
            raise CorruptSecret(f"secret {name!r} has an unknown format (version byte or length)")
        nonce, ct = blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:]
        return AESGCM(self._key).decrypt(nonce, ct, _aad(name)).decode("utf-8")


def _aad(name: str) -> bytes:
    return bytes([VERSION]) + name.encode("utf-8")


@dataclass(frozen=True)
class SecretInfo:
    name: str
    key_id: str
    created_at: float
    updated_at: float


# --- the box ----------------------------------------------------------------------------------------------------
class SecretBox:
    """Encrypts secrets into a Store and decrypts them back.

    Args:
        store: anything with put_secret/get_secret/list_secrets/delete_secret (connector.store.base.Store).
        master_key: encrypts new values (and decrypts what it encrypted).
        old_keys: keys that may still decrypt older secrets (during a rotation).
        clock: epoch seconds for created_at/updated_at.
    """

    def __init__(self, store: Store, master_key: MasterKey, *, old_keys: Iterable[MasterKey] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._key = master_key
        self._old = [k for k in old_keys if k.key_id != master_key.key_id]
        self._clock = clock
        self._seen: set[str] = set()  # plaintexts handled by this process, for RedactingFilter

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._key.key_id!r}, old={[k.key_id for k in self._old]})"

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def known_values(self) -> list[str]:
        """Every plaintext this box has stored or revealed: hand this to RedactingFilter."""
        return list(self._seen)

    async def put(self, name: str, value: str | Secret) -> None:
        """Encrypt and store (insert or replace) under the current master key."""
        _check_name(name)
        plain = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(plain, str):
            raise TypeError("a secret value is a str")
        self._seen.add(plain)
        await self._store.put_secret(name, self._key.seal(name, plain), self._key.key_id, now=self._clock())

    async def get(self, name: str) -> Secret:
        """The decrypted value, wrapped (`.reveal()` for the str).

        Raises:
            SecretNotFound, WrongMasterKey, CorruptSecret.
        """
        rec = await self._store.get_secret(name)
        if rec is None:
            raise SecretNotFound(name)
        plain = self._decrypt(name, rec.ciphertext, rec.key_id, self._keyring())
        self._seen.add(plain)
        return Secret(plain)

    async def list(self) -> list[SecretInfo]:
        """Names and metadata, never values; sorted by name."""
        recs = await self._store.list_secrets()
        return sorted((SecretInfo(r.name, r.key_id, r.created_at, r.updated_at) for r in recs),
                      key=lambda i: i.name)

    async def delete(self, name: str) -> None:
        """Raises SecretNotFound if there was none."""
        if not await self._store.delete_secret(name):
            raise SecretNotFound(name)

    async def rotate(self, new_key: MasterKey) -> int:
        """Re-encrypt every secret under `new_key`; the box uses it from then on.

        Everything is decrypted first (current, old and new key may decrypt), so a secret no key can open raises
        WrongMasterKey before anything is rewritten. Secrets already under `new_key` are left as they are, so an
        interrupted rotation can simply be run again. Returns how many secrets were re-encrypted.
        """
        ring = self._keyring() + [new_key]
        plain: list[tuple[str, str]] = []
        for rec in await self._store.list_secrets():
            if rec.key_id == new_key.key_id:
                continue
            plain.append((rec.name, self._decrypt(rec.name, rec.ciphertext, rec.key_id, ring)))
        now = self._clock()
        for name, value in plain:
            await self._store.put_secret(name, new_key.seal(name, value), new_key.key_id, now=now)
        if new_key.key_id != self._key.key_id:
            self._old = [k for k in [self._key, *self._old] if k.key_id != new_key.key_id]
            self._key = new_key
        log.info("re-encrypted %d secret(s) under master key id %s", len(plain), new_key.key_id)
        return len(plain)

    def _keyring(self) -> builtins.list[MasterKey]:  # `list` here is the method above
        return [self._key, *self._old]

    @staticmethod
    def _decrypt(name: str, blob: bytes, key_id: str, ring: builtins.list[MasterKey]) -> str:
        key = next((k for k in ring if k.key_id == key_id), None)
        if key is None:
            raise WrongMasterKey(name, [k.key_id for k in ring], key_id)
        try:
            return key.open(name, bytes(blob))
        except InvalidTag:
            raise CorruptSecret(
                f"secret {name!r} failed authentication under its key (id {key_id}): the stored ciphertext was "
                "altered or belongs to another name") from None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise ValueError("a secret name is 1-200 printable characters")


# --- logging ----------------------------------------------------------------------------------------------------
class RedactingFilter(logging.Filter):
    """Replaces every known secret value in a log record's message (and formatted traceback) with '***'.

    Attach it to *handlers*: a filter on a logger sees only records logged on that very logger, not those
    propagated from child loggers (`install_redaction` does this for the root logger's handlers).

    Args:
        values_getter: returns the current secret values (called per record, so new secrets are covered).
        min_length: shorter values are not redacted (a 2-character "secret" would shred every line).
    """

    def __init__(self, values_getter: Callable[[], Iterable[str]], *, min_length: int = 4) -> None:
        super().__init__()
        self._values = values_getter
        self._min = min_length

    def _redact(self, text: str, values: list[str]) -> str:
        for v in values:
            if v in text:
                text = text.replace(v, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        values = sorted((v for v in self._values() if v and len(v) >= self._min), key=len, reverse=True)
        if not values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as it normally would
            return True
        redacted = self._redact(message, values)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text, values)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info, values)
        return True


def install_redaction(values_getter: Callable[[], Iterable[str]],
                      logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one RedactingFilter to every handler of `logger` (default: the root logger). Returns the filter."""
    flt = RedactingFilter(values_getter)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(flt)
    return flt


def master_key_from_environment(environ: Mapping[str, str] | None = None) -> MasterKey:
    """ML_MASTER_KEY (the key itself) or ML_MASTER_KEY_FILE (a file holding it), in that order."""
    env = os.environ if environ is None else environ
    if env.get("ML_MASTER_KEY"):
        return MasterKey.from_environ(env)
    if env.get("ML_MASTER_KEY_FILE"):
        return MasterKey.from_file(Path(env["ML_MASTER_KEY_FILE"]))
    raise MasterKeyError(
        "no master key: set ML_MASTER_KEY (or ML_MASTER_KEY_FILE) to a key made by `ml-connector secrets generate-key`"
    )

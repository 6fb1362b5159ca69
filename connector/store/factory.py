"""Builds the Store a URL names. The only module that knows both implementations; opening is the caller's job.

Accepted forms:
    sqlite:///relative/path.db        a file relative to the working directory (three slashes)
    sqlite:////abs/path.db            an absolute path (four slashes)
    sqlite://:memory:                 an in-memory database (tests only: nothing survives close)
    mongodb://host[:port][,...]/db?opts
    mongodb+srv://cluster.example/db?opts
The MongoDB database comes from the URL's path, else the `database` option, else "ml_connector".

A MongoDB password can come from a file instead of the URL (`password_file`): the store holds the encrypted
secrets, so its own password cannot be one of them. The file must be the owner's alone (like the master key file);
its content (surrounding whitespace ignored) goes into the URL percent-encoded. The URL with the password is handed
to the driver only: never logged, never in an error message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from connector.store.base import Store, StoreInsecure

ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite://:memory:, "
    "mongodb://host[:port]/database, mongodb+srv://host/database"
)


def open_store(url: str, *, password_file: str | os.PathLike[str] | None = None, **options: Any) -> Store:
    """Build (but do not open) the store for `url`.

    Args:
        url: one of the accepted forms above.
        password_file: MongoDB only: a file (mode 600) holding the password of the URL's user.
        **options: SQLite: busy_timeout (s), max_batch, commit_delay (s). MongoDB: database,
            server_selection_timeout (s, default 5), operation_timeout (s, default 10; socketTimeoutMS: no reply is
            awaited longer), history_limit, and any other keyword for AsyncMongoClient.

    Raises:
        ValueError: the URL's scheme or shape is not one of the accepted forms.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme; accepted forms: {ACCEPTED_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if password_file is not None:
            raise ValueError("password_file is for a mongodb:// store URL; a SQLite file has no password")
        return _sqlite(url, rest, options)
    if scheme in ("mongodb", "mongodb+srv"):
        if password_file is not None:
            url = with_password(url, read_password_file(Path(password_file)))
        return _mongo(url, options)
    raise ValueError(f"unknown store URL scheme {scheme!r} in {_redact(url)!r}; accepted forms: {ACCEPTED_FORMS}")


def sqlite_path(url: str) -> str:
    """The file path (or ":memory:") a sqlite: URL names."""
    _, _, rest = url.partition("://")
    if rest == ":memory:":
        return rest
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"SQLite URL {url!r} names no file; accepted forms: {ACCEPTED_FORMS}")
    path = unquote(rest[1:])  # "/rel.db" -> "rel.db", "//abs.db" -> "/abs.db"
    if "?" in path:
        raise ValueError(f"SQLite URL {url!r}: pass options as keywords, not in the URL")
    return path


def _sqlite(url: str, rest: str, options: dict[str, Any]) -> Store:
    from connector.store.sqlite import SQLiteStore

    allowed = {"busy_timeout", "max_batch", "commit_delay"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown SQLite store options {sorted(unknown)}; known: {sorted(allowed)}")
    return SQLiteStore(sqlite_path(url), **options)


def _mongo(url: str, options: dict[str, Any]) -> Store:
    from pymongo import AsyncMongoClient

    from connector.store.mongo import DEFAULT_DATABASE, MongoStore

    options = dict(options)
    path_db = unquote(urlsplit(url).path.lstrip("/"))  # the URI spec percent-encodes "/" in credentials
    option_db = options.pop("database", None)
    database = path_db or option_db or DEFAULT_DATABASE
    history_limit = options.pop("history_limit", 500)
    selection = options.pop("server_selection_timeout", 5.0)
    operation = options.pop("operation_timeout", 10.0)
    client = AsyncMongoClient(
        url, serverSelectionTimeoutMS=int(selection * 1000), socketTimeoutMS=int(operation * 1000), **options
    )
    return MongoStore(client, database, owns_client=True, history_limit=history_limit)


def _redact(url: str) -> str:
    """Never echo a password from a URL into an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def read_password_file(path: Path) -> str:
    """The password in `path`, refused unless only its owner may read or write it.

    Raises:
        StoreInsecure: group or others have access (the message says to chmod 600).
        ValueError: missing, unreadable or empty.
    """
    try:
        st = path.stat()
        if os.name == "posix" and stat.S_IMODE(st.st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
            raise StoreInsecure(f"store password file {path} has mode {stat.S_IMODE(st.st_mode):04o}: other users of "
                                f"this host can read the store's password; run `chmod 600 {path}`")
        password = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"cannot read the store password file {path}: {reason}") from None
    if not password:
        raise ValueError(f"the store password file {path} is empty")
    return password


def with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) for the user it names; refuses a URL without a user or with a
    password already (two sources for one password is a mistake to point out, not to guess about)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or not userinfo:
        raise ValueError(f"store URL {_redact(url)!r} names no user: with a password file, write mongodb://USER@host/db")
    if ":" in userinfo:
        raise ValueError(f"store URL {_redact(url)!r} already has a password: remove it or the password file")
    netloc = f"{userinfo}:{quote(password, safe='')}@{hosts}"
    return parts._replace(netloc=netloc).geturl()

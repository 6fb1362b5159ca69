"""Builds the Store a URL names. The only module that knows both implementations; opening is the caller's job.

Accepted forms:
    sqlite:///relative/path.db        a file relative to the working directory (three slashes)
    sqlite:////abs/path.db            an absolute path (four slashes)
    sqlite://:memory:                 an in-memory database (tests only: nothing survives close)
    mongodb://host[:port][,...]/db?opts
    mongodb+srv://cluster.example/db?opts
The MongoDB database comes from the URL's path, else the `database` option, else "ml_connector".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from connector.store.base import Store

ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite://:memory:, "
    "mongodb://host[:port]/database, mongodb+srv://host/database"
)


def open_store(url: str, **options: Any) -> Store:
    """Build (but do not open) the store for `url`.

    Args:
        url: one of the accepted forms above.
        **options: SQLite: busy_timeout (s), max_batch. MongoDB: database, server_selection_timeout (s, default 5),
            operation_timeout (s, default 10; socketTimeoutMS: no reply is awaited longer), history_limit, and any
            other keyword for AsyncMongoClient.

    Raises:
        ValueError: the URL's scheme or shape is not one of the accepted forms.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme; accepted forms: {ACCEPTED_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite(url, rest, options)
    if scheme in ("mongodb", "mongodb+srv"):
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

    allowed = {"busy_timeout", "max_batch"}
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

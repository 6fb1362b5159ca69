"""open_store: URL forms, options, and the error for anything else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.store.factory import open_store, sqlite_path
from connector.store.mongo import MongoStore
from connector.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    "url,path",
    [
        ("sqlite:///data/ml.db", "data/ml.db"),
        ("sqlite:////var/lib/ml/ml.db", "/var/lib/ml/ml.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///with%20space.db", "with space.db"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path
    store = open_store(url, busy_timeout=1.0)
    assert isinstance(store, SQLiteStore) and store.path == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://relative.db", "sqlite:///x.db?mode=ro"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


def test_sqlite_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="database"):
        open_store("sqlite:///x.db", database="x")


async def test_sqlite_url_opens_a_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/ml.db")  # an absolute path makes four slashes
    await store.open()
    await store.close()
    assert os.path.exists(tmp_path / "ml.db")


@pytest.mark.parametrize(
    "url,options,database",
    [
        ("mongodb://127.0.0.1:9/ml_prod", {}, "ml_prod"),
        ("mongodb://u:p%40ss@h1:27017,h2:27017/ml_prod?replicaSet=rs0", {}, "ml_prod"),
        ("mongodb://127.0.0.1:9/", {"database": "from_option"}, "from_option"),
        ("mongodb://127.0.0.1:9", {}, "ml_connector"),
    ],
)
async def test_mongodb_urls(url: str, options: dict, database: str) -> None:
    store = open_store(url, **options)
    assert isinstance(store, MongoStore) and store.database == database
    await store.close()


class _FakeClient:
    def __init__(self, url: str, **kwargs: object) -> None:
        self.url, self.kwargs = url, kwargs

    def __getitem__(self, name: str):
        from mongomock_motor import AsyncMongoMockClient

        return AsyncMongoMockClient()[name]


def test_mongodb_client_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS or sockets: the factory hands the URL and a short server selection timeout to AsyncMongoClient."""
    import pymongo

    monkeypatch.setattr(pymongo, "AsyncMongoClient", _FakeClient)
    store = open_store("mongodb+srv://cluster0.example.net/ml_prod", server_selection_timeout=2, appname="mlc")
    assert store.database == "ml_prod"
    assert store._client.url == "mongodb+srv://cluster0.example.net/ml_prod"
    assert store._client.kwargs == {"serverSelectionTimeoutMS": 2000, "socketTimeoutMS": 10000, "appname": "mlc"}
    default = open_store("mongodb://h/db", operation_timeout=3)
    assert default._client.kwargs == {"serverSelectionTimeoutMS": 5000, "socketTimeoutMS": 3000}


@pytest.mark.parametrize("url", ["postgres://x/y", "redis://localhost", "ml.db", "/var/lib/ml.db"])
def test_unknown_forms_name_the_accepted_ones(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "sqlite:///" in message and "mongodb://" in message and "mongodb+srv://" in message


def test_error_messages_do_not_echo_passwords() -> None:
    with pytest.raises(ValueError) as caught:
        open_store("postgres://user:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


# --- store.password_file ----------------------------------------------------------------------------------------
def _password_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "mongo-password"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_password_file_goes_into_the_url_escaped(tmp_path: Path) -> None:
    tricky = "p@ss:w/rd%?#[]"
    store = open_store("mongodb://ml@db.example:27017/ml?authSource=admin",
                       password_file=_password_file(tmp_path, tricky + "\n"))
    assert isinstance(store, MongoStore) and store.database == "ml"
    credentials = store._client.options.pool_options._credentials
    assert (credentials.username, credentials.password, credentials.source) == ("ml", tricky, "admin")
    assert tricky not in repr(store)


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o620])
def test_a_password_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    from connector.store.base import StoreInsecure

    path = _password_file(tmp_path, "secret-pw", mode)
    with pytest.raises(StoreInsecure, match=f"run `chmod 600 {path}`"):
        open_store("mongodb://ml@db.example/ml", password_file=path)


@pytest.mark.parametrize("url,match", [
    ("mongodb://db.example/ml", "names no user"),
    ("mongodb://ml:inline@db.example/ml", "already has a password"),
    ("sqlite:///x.db", "mongodb://"),
])
def test_password_file_needs_a_user_and_no_other_password(tmp_path: Path, url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as refused:
        open_store(url, password_file=_password_file(tmp_path, "secret-pw"))
    assert "secret-pw" not in str(refused.value) and "inline" not in str(refused.value)


def test_missing_or_empty_password_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        open_store("mongodb://ml@db.example/ml", password_file=tmp_path / "nope")
    with pytest.raises(ValueError, match="is empty"):
        open_store("mongodb://ml@db.example/ml", password_file=_password_file(tmp_path, " \n"))


def test_configured_password_file_reaches_the_store(tmp_path: Path) -> None:
    from connector.app import configured_store
    from connector.config import load_settings

    path = _password_file(tmp_path, "from-the-file")
    settings = load_settings(environ={"ML_STORE__URL": "mongodb://ml@db.example/ml",
                                      "ML_STORE__PASSWORD_FILE": str(path)})
    store = configured_store(settings)
    assert store._client.options.pool_options._credentials.password == "from-the-file"


def test_configured_commit_delay_reaches_a_sqlite_store_only(tmp_path: Path) -> None:
    from connector.app import configured_store
    from connector.config import ConfigError, load_settings

    default = configured_store(load_settings(environ={"ML_STORE__URL": f"sqlite:///{tmp_path}/a.db"}))
    assert isinstance(default, SQLiteStore) and default._db._commit_delay == 0.005
    off = configured_store(load_settings(environ={"ML_STORE__URL": f"sqlite:///{tmp_path}/a.db",
                                                  "ML_STORE__COMMIT_DELAY_MS": "0"}))
    assert off._db._commit_delay == 0  # type: ignore[attr-defined]
    mongo = configured_store(load_settings(environ={"ML_STORE__URL": "mongodb://db.example/ml",
                                                    "ML_STORE__COMMIT_DELAY_MS": "20"}))
    assert isinstance(mongo, MongoStore)  # not an option of MongoDB's (its driver has its own write path)
    with pytest.raises((ConfigError, ValueError), match="commit_delay_ms"):
        load_settings(environ={"ML_STORE__URL": f"sqlite:///{tmp_path}/a.db", "ML_STORE__COMMIT_DELAY_MS": "-1"})

"""Encrypted secrets through the real SQLite store: round trip, wrong key, moved ciphertext, rotation, redaction."""

from __future__ import annotations

import inspect
import io
import logging
import os
import pickle

import pytest

from connector.secrets import (
    CorruptSecret,
    MasterKey,
    MasterKeyError,
    RedactingFilter,
    Secret,
    SecretBox,
    SecretNotFound,
    WrongMasterKey,
    generate_master_key,
    install_redaction,
)

VALUE = "p@ss-w0rd-from-the-portal~XYZ"


async def _open_sqlite(path):
    try:
        from connector.store.factory import open_store
    except ImportError:  # the factory is being written next door; the store itself is enough here
        from connector.store.sqlite import SQLiteStore

        store = SQLiteStore(path)
    else:
        store = open_store(f"sqlite:///{path}")
        if inspect.isawaitable(store):
            store = await store
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path):
    s = await _open_sqlite(tmp_path / "secrets.db")
    yield s
    await s.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def key() -> MasterKey:
    return MasterKey.from_text(generate_master_key())


async def test_round_trip_list_and_delete(store):
    clock = Clock()
    box = SecretBox(store, key(), clock=clock)
    await box.put("fno.client_secret", VALUE)
    clock.now += 10
    await box.put("fno.client_secret", VALUE + "2")
    await box.put("bot.password", Secret("other-value"))
    got = await box.get("fno.client_secret")
    assert isinstance(got, Secret) and got.reveal() == VALUE + "2"
    infos = await box.list()
    assert [i.name for i in infos] == ["bot.password", "fno.client_secret"]
    fno = infos[1]
    assert fno.key_id == box.key_id and fno.created_at == 1_800_000_000.0 and fno.updated_at == clock.now
    assert VALUE not in repr(infos)
    await box.delete("bot.password")
    with pytest.raises(SecretNotFound, match="bot.password"):
        await box.get("bot.password")
    with pytest.raises(SecretNotFound):
        await box.delete("bot.password")


async def test_stored_bytes_are_ciphertext(store):
    box = SecretBox(store, key())
    await box.put("x", VALUE)
    rec = await store.get_secret("x")
    assert VALUE.encode() not in rec.ciphertext and rec.ciphertext[0] == 1
    assert len(rec.ciphertext) == 1 + 12 + len(VALUE.encode()) + 16


async def test_wrong_master_key_says_so(store):
    right, wrong = key(), key()
    await SecretBox(store, right).put("fno.client_secret", VALUE)
    with pytest.raises(WrongMasterKey) as err:
        await SecretBox(store, wrong).get("fno.client_secret")
    msg = str(err.value)
    assert f"id {wrong.key_id}" in msg and f"(id {right.key_id})" in msg and "'fno.client_secret'" in msg
    assert "ML_MASTER_KEY" in msg and VALUE not in msg
    assert err.value.__cause__ is None and err.value.__context__ is None  # never a raw InvalidTag


async def test_ciphertext_moved_to_another_name_does_not_decrypt(store):
    k = key()
    box = SecretBox(store, k)
    await box.put("a", VALUE)
    rec = await store.get_secret("a")
    await store.put_secret("b", rec.ciphertext, rec.key_id, now=1.0)
    with pytest.raises(CorruptSecret, match="another name"):
        await box.get("b")
    tampered = bytearray(rec.ciphertext)
    tampered[-1] ^= 1
    await store.put_secret("a", bytes(tampered), rec.key_id, now=1.0)
    with pytest.raises(CorruptSecret):
        await box.get("a")


async def test_rotate_reencrypts_everything(store):
    old, new = key(), key()
    box = SecretBox(store, old)
    for i in range(3):
        await box.put(f"s{i}", f"{VALUE}-{i}")
    assert await box.rotate(new) == 3
    assert {i.key_id for i in await box.list()} == {new.key_id}
    assert box.key_id == new.key_id
    only_new = SecretBox(store, new)
    assert (await only_new.get("s2")).reveal() == f"{VALUE}-2"
    with pytest.raises(WrongMasterKey):
        await SecretBox(store, old).get("s0")
    assert await only_new.rotate(new) == 0  # idempotent: an interrupted rotation can be re-run


async def test_rotate_with_an_undecryptable_secret_writes_nothing(store):
    a, b, c = key(), key(), key()
    await SecretBox(store, a).put("mine", VALUE)
    await SecretBox(store, b).put("foreign", VALUE)
    box = SecretBox(store, a)
    with pytest.raises(WrongMasterKey, match="'foreign'"):
        await box.rotate(c)
    assert {i.name: i.key_id for i in await box.list()} == {"mine": a.key_id, "foreign": b.key_id}
    # with the old key at hand it works
    assert await SecretBox(store, a, old_keys=[b]).rotate(c) == 2


def test_secret_never_shows_its_value():
    s = Secret(VALUE)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, repr([s]), repr({"k": s})):
        assert VALUE not in text and "***" in text
    assert s.reveal() == VALUE and s == Secret(VALUE) and s != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        hash(s)


def test_master_key_text_and_ids():
    text = generate_master_key()
    k = MasterKey.from_text(text)
    assert len(k.key_id) == 12 and k.key_id in repr(k) and text not in repr(k)
    assert MasterKey.from_text(text.rstrip("=")) == k  # padding optional
    assert MasterKey.from_environ({"ML_MASTER_KEY": text}) == k
    with pytest.raises(MasterKeyError, match="not set"):
        MasterKey.from_environ({})
    with pytest.raises(MasterKeyError, match="16 bytes"):
        MasterKey.from_text("A" * 22)
    with pytest.raises(MasterKeyError, match="base64") as err:
        MasterKey.from_text("not base64 at all!!")
    assert "not base64 at all" not in str(err.value)


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_master_key_file_permissions(tmp_path, caplog):
    text = generate_master_key()
    path = tmp_path / "master.key"
    path.write_text(text + "\n")
    path.chmod(0o600)
    assert MasterKey.from_file(path) == MasterKey.from_text(text)
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        MasterKey.from_file(path)
    path.chmod(0o620)
    with pytest.raises(MasterKeyError):
        MasterKey.from_file(path)
    with caplog.at_level(logging.WARNING, logger="connector.secrets"):
        path.chmod(0o640)
        MasterKey.from_file(path)
        path.chmod(0o644)
        MasterKey.from_file(path, insecure_ok=True)
    assert len(caplog.records) == 2 and text not in caplog.text
    with pytest.raises(MasterKeyError, match="cannot read"):
        MasterKey.from_file(tmp_path / "missing.key")


def test_redacting_filter_on_the_root_handlers_covers_child_loggers():
    values = [VALUE]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        flt = install_redaction(lambda: values)
        assert flt in handler.filters
        child = logging.getLogger("somelib.http")
        child.setLevel(logging.INFO)
        child.info("posting client_secret=%s&scope=x", VALUE)
        child.warning("plain %s", "no secrets here")
        try:
            raise RuntimeError(f"server said {VALUE}")
        except RuntimeError:
            child.exception("failed")
        values.append("later-added-secret")
        child.info("later: later-added-secret")
        child.info("short ones are left alone: %s", "abc")
    finally:
        root.removeHandler(handler)
        child.setLevel(logging.NOTSET)
    out = stream.getvalue()
    assert VALUE not in out and "later-added-secret" not in out
    assert "client_secret=***&scope=x" in out and "server said ***" in out and "no secrets here" in out
    assert out.count("***") == 3


async def test_box_feeds_the_filter(store):
    box = SecretBox(store, key())
    await box.put("x", VALUE)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "value is %s", (VALUE,), None)
    RedactingFilter(box.known_values).filter(record)
    assert record.getMessage() == "value is ***"

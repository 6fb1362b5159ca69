"""SQLite operations for typed replies: Graph subscriptions and the reply inbox (run on the store's DB thread).

Each row keeps the whole dataclass as JSON in `doc`; the columns the queries filter on (lease, status, due time)
are mirrored next to it and win over the doc when read back.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, fields, replace
from typing import Any

from connector.store._sqlite_ops import Tx
from connector.store.base import GraphSubscription, InboundReply

_SUB_FIELDS = {f.name for f in fields(GraphSubscription)}
_REPLY_FIELDS = {f.name for f in fields(InboundReply)}


def sub_from_row(row: sqlite3.Row) -> GraphSubscription:
    doc = {k: v for k, v in json.loads(row["doc"]).items() if k in _SUB_FIELDS}
    doc.update(lease_owner=row["lease_owner"], lease_expires_at=row["lease_expires_at"])
    return GraphSubscription(**doc)


def reply_from_row(row: sqlite3.Row) -> InboundReply:
    doc = {k: v for k, v in json.loads(row["doc"]).items() if k in _REPLY_FIELDS}
    doc.update(status=row["status"], next_attempt_at=row["next_attempt_at"], lease_owner=row["lease_owner"],
               lease_expires_at=row["lease_expires_at"])
    return InboundReply(**doc)


def _sub_params(sub: GraphSubscription) -> tuple[Any, ...]:
    return (sub.resource, sub.subscription_id, sub.lease_owner, sub.lease_expires_at, json.dumps(asdict(sub)))


def add_sub(conn: sqlite3.Connection, sub: GraphSubscription) -> bool:
    with Tx(conn):
        cur = conn.execute("INSERT INTO graph_subscriptions (resource, subscription_id, lease_owner, "
                           "lease_expires_at, doc) VALUES (?, ?, ?, ?, ?) ON CONFLICT (resource) DO NOTHING",
                           _sub_params(sub))
    return cur.rowcount == 1


def put_sub(conn: sqlite3.Connection, sub: GraphSubscription) -> None:
    with Tx(conn):
        conn.execute("INSERT INTO graph_subscriptions (resource, subscription_id, lease_owner, lease_expires_at, "
                     "doc) VALUES (?, ?, ?, ?, ?) ON CONFLICT (resource) DO UPDATE SET "
                     "subscription_id = excluded.subscription_id, lease_owner = excluded.lease_owner, "
                     "lease_expires_at = excluded.lease_expires_at, doc = excluded.doc", _sub_params(sub))


def lease_sub(conn: sqlite3.Connection, resource: str, owner: str, now: float,
              lease_seconds: float) -> GraphSubscription | None:
    """One UPDATE under the write lock: of any number of instances, one takes a free or expired lease."""
    with Tx(conn):
        rows = conn.execute(
            "UPDATE graph_subscriptions SET lease_owner = ?, lease_expires_at = ? WHERE resource = ? AND "
            "(lease_owner IS NULL OR lease_owner = ? OR lease_expires_at <= ?) RETURNING *",
            (owner, now + lease_seconds, resource, owner, now)).fetchall()
    return sub_from_row(rows[0]) if rows else None


def note_notification(conn: sqlite3.Connection, subscription_id: str, at: float) -> None:
    with Tx(conn):
        row = conn.execute("SELECT * FROM graph_subscriptions WHERE subscription_id = ?",
                           (subscription_id,)).fetchone()
        if row is None:
            return
        sub = sub_from_row(row)
        if sub.last_notification_at is not None and sub.last_notification_at >= at:
            return
        conn.execute("UPDATE graph_subscriptions SET doc = ? WHERE resource = ?",
                     (json.dumps(asdict(replace(sub, last_notification_at=at))), sub.resource))


def enqueue_reply(conn: sqlite3.Connection, reply: InboundReply) -> bool:
    with Tx(conn):
        cur = conn.execute(
            "INSERT INTO inbound_replies (key, status, received_at, next_attempt_at, lease_owner, lease_expires_at, "
            "doc) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (reply.key, reply.status, reply.received_at, reply.next_attempt_at, reply.lease_owner,
             reply.lease_expires_at, json.dumps(asdict(reply))))
    return cur.rowcount == 1


def claim_replies(conn: sqlite3.Connection, owner: str, now: float, lease_seconds: float,
                  limit: int) -> list[InboundReply]:
    with Tx(conn):
        rows = conn.execute(
            "SELECT * FROM inbound_replies WHERE (status = 'queued' AND next_attempt_at <= ?) OR "
            "(status = 'processing' AND lease_expires_at <= ?) ORDER BY received_at, key LIMIT ?",
            (now, now, limit)).fetchall()
        claimed = []
        for row in rows:
            reply = reply_from_row(row)
            reply = replace(reply, status="processing", lease_owner=owner, lease_expires_at=now + lease_seconds,
                            attempts=reply.attempts + 1)
            conn.execute("UPDATE inbound_replies SET status = ?, lease_owner = ?, lease_expires_at = ?, doc = ? "
                         "WHERE key = ?", (reply.status, owner, reply.lease_expires_at,
                                           json.dumps(asdict(reply)), reply.key))
            claimed.append(reply)
    return claimed


def finish_reply(conn: sqlite3.Connection, key: str, owner: str, status: str, outcome: str, now: float,
                 retry_at: float | None) -> bool:
    with Tx(conn):
        row = conn.execute("SELECT * FROM inbound_replies WHERE key = ? AND status = 'processing' AND "
                           "lease_owner = ?", (key, owner)).fetchone()
        if row is None:
            return False
        reply = replace(reply_from_row(row), status=status, outcome=outcome, lease_owner=None, lease_expires_at=0.0,
                        next_attempt_at=retry_at if retry_at is not None else now)
        conn.execute("UPDATE inbound_replies SET status = ?, next_attempt_at = ?, lease_owner = NULL, "
                     "lease_expires_at = 0, doc = ? WHERE key = ?",
                     (reply.status, reply.next_attempt_at, json.dumps(asdict(reply)), key))
    return True

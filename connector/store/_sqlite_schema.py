"""The SQLite schema and its migrations. PRAGMA user_version is the version; MIGRATIONS[n] goes from n to n + 1.

A later change appends a step (never edits a shipped one); migrate() applies what a database lacks, in one
transaction, and refuses a database newer than this code.
"""

from __future__ import annotations

import sqlite3

from connector.store.base import StoreUnavailable

MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            environment TEXT NOT NULL,
            business_event_id TEXT NOT NULL,
            control_number INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            legal_entity TEXT,
            payload TEXT NOT NULL,
            status TEXT NOT NULL,
            stage TEXT NOT NULL,
            first_stage TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            received_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            last_error TEXT,
            lease_id TEXT,
            lease_expires_at REAL,
            claimed_by TEXT,
            CONSTRAINT events_dedup UNIQUE (environment, business_event_id, control_number)
        )""",
        # claim: equality on status, then next_attempt_at in order (not partial: the planner must pick it unaided)
        "CREATE INDEX events_due ON events (status, next_attempt_at, seq)",
        "CREATE INDEX events_leased ON events (status, lease_expires_at)",
        "CREATE INDEX events_received ON events (received_at, seq)",
        "CREATE INDEX events_status_received ON events (status, received_at, seq)",
        """CREATE TABLE event_history (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
            at REAL NOT NULL,
            step TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX event_history_event ON event_history (event_id, seq)",
        """CREATE TABLE secrets (
            name TEXT PRIMARY KEY,
            ciphertext BLOB NOT NULL,
            key_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE TABLE installs (id TEXT PRIMARY KEY, active INTEGER NOT NULL, doc TEXT NOT NULL)",
        """CREATE TABLE posted_cards (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            route TEXT NOT NULL,
            kind TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            activity_id TEXT NOT NULL,
            service_url TEXT NOT NULL,
            thread_key TEXT,
            channel_id TEXT,
            digest_id TEXT,
            posted_at REAL NOT NULL,
            CONSTRAINT posted_cards_once UNIQUE (event_id, route, kind, conversation_id)
        )""",
        "CREATE INDEX posted_cards_thread ON posted_cards (thread_key, channel_id, posted_at, seq) "
        "WHERE kind = 'thread'",
    ],
    [  # 1 -> 2: approvals (compare-and-set on status), their audit log, F&O user -> Entra user mappings
        """CREATE TABLE approvals (
            seq INTEGER PRIMARY KEY,
            environment TEXT NOT NULL,
            work_item_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            status TEXT NOT NULL,
            assignee_fo_user TEXT,
            assignee_object_id TEXT,
            assignee_name TEXT,
            subject TEXT,
            outcomes TEXT NOT NULL DEFAULT '[]',
            outcome TEXT,
            comment TEXT,
            decided_by_object_id TEXT,
            decided_by_name TEXT,
            decided_at REAL,
            fo_status TEXT,
            superseded_by TEXT,
            reminders_sent INTEGER NOT NULL DEFAULT 0,
            last_reminder_at REAL,
            next_check_at REAL NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            CONSTRAINT approvals_key UNIQUE (environment, work_item_id)
        )""",
        # list_approvals: by status then next_check_at in order, or next_check_at alone (no status given)
        "CREATE INDEX approvals_status_due ON approvals (status, next_check_at, environment, work_item_id)",
        "CREATE INDEX approvals_due ON approvals (next_check_at, environment, work_item_id)",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            environment TEXT NOT NULL,
            work_item_id TEXT NOT NULL,
            action TEXT NOT NULL,
            actor_object_id TEXT,
            actor_name TEXT,
            outcome TEXT,
            comment TEXT,
            card TEXT,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX audit_item ON audit (environment, work_item_id, at, seq)",
        "CREATE INDEX audit_at ON audit (at, seq)",
        """CREATE TABLE user_mappings (
            environment TEXT NOT NULL,
            fo_user_key TEXT NOT NULL,
            fo_user TEXT NOT NULL,
            object_id TEXT,
            upn TEXT,
            display_name TEXT,
            expires_at REAL NOT NULL,
            source TEXT NOT NULL,
            PRIMARY KEY (environment, fo_user_key)
        )""",
    ],
    [  # 2 -> 3: running instances (heartbeat leases), so a dead one's event leases are released at once
        """CREATE TABLE instances (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_started TEXT NOT NULL,
            started_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        # retire_instance: the events one instance holds (few: only those in flight)
        "CREATE INDEX events_claimed ON events (claimed_by) WHERE status = 'processing'",
    ],
    [  # 3 -> 4: "my approvals" (an approver's pending items, oldest first) and the per-user daily summary
        "CREATE INDEX approvals_assignee ON approvals (assignee_object_id, status, created_at, environment, "
        "work_item_id)",
        """CREATE TABLE summary_subscriptions (
            user_object_id TEXT PRIMARY KEY,
            enabled INTEGER NOT NULL,
            service_url TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            tenant_id TEXT,
            user_name TEXT,
            time_zone TEXT NOT NULL,
            next_due_at REAL NOT NULL,
            last_sent_day TEXT,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX summary_due ON summary_subscriptions (enabled, next_due_at)",
    ],
    [  # 4 -> 5: typed replies: Graph subscriptions (leased), the reply inbox (deduplicated on the message id)
        """CREATE TABLE graph_subscriptions (
            resource TEXT PRIMARY KEY,
            subscription_id TEXT UNIQUE,
            lease_owner TEXT,
            lease_expires_at REAL NOT NULL DEFAULT 0,
            doc TEXT NOT NULL
        )""",
        """CREATE TABLE inbound_replies (
            key TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            received_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            lease_owner TEXT,
            lease_expires_at REAL NOT NULL DEFAULT 0,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX inbound_replies_due ON inbound_replies (status, next_attempt_at, received_at)",
        "CREATE INDEX posted_cards_activity ON posted_cards (activity_id)",
    ],
    [  # 5 -> 6: counts per status kept by triggers, so count_by_status (/metrics, the status page, the
        # outbox's backlog) costs the same at 1k and 500k events
        "CREATE TABLE event_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO event_counts (status, n) VALUES ('queued', 0), ('processing', 0), ('done', 0), ('failed', 0), "
        "('ignored', 0)",
        "UPDATE event_counts SET n = (SELECT count(*) FROM events WHERE events.status = event_counts.status)",
        """CREATE TRIGGER events_count_insert AFTER INSERT ON events BEGIN
            UPDATE event_counts SET n = n + 1 WHERE status = NEW.status;
        END""",
        """CREATE TRIGGER events_count_update AFTER UPDATE OF status ON events WHEN OLD.status <> NEW.status BEGIN
            UPDATE event_counts SET n = n - 1 WHERE status = OLD.status;
            UPDATE event_counts SET n = n + 1 WHERE status = NEW.status;
        END""",
        """CREATE TRIGGER events_count_delete AFTER DELETE ON events BEGIN
            UPDATE event_counts SET n = n - 1 WHERE status = OLD.status;
        END""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"SQLite {path} has schema version {version}; this connector knows up to {SCHEMA_VERSION}"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise

"""This process's instance record in the store, and the retirement of dead ones (so their work resumes at once).

Each process life registers a new Instance (a fresh id, which is the pipeline's worker name) and heartbeats it every
lease/3. Two live processes never share an identity: the id is random per life. At start and at every heartbeat it
retires the instances it can prove dead:
  - any instance whose heartbeat lapsed (the store's compare-and-set on the expiry keeps a late heartbeat safe), and
  - an instance on this same host (same host name, kernel boot and pid namespace) whose process is gone: its pid
    does not exist, or belongs to a process started at another time (a reused pid). That is how a restart after
    `kill -9` takes its previous life's events back at once instead of waiting out their leases.
Retiring hands the dead instance's leased events back to the queue (connector/store/base.py, retire_instance).

If this process's own record is retired (it stalled longer than its lease and another process took its work), it
registers again under a new id and tells the pipeline to claim under that name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Awaitable, Callable

from connector.store import Instance, LeaseLost, Store, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    pid_started: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def process_started(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or "" where unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()  # the command name (field 2) may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else ""


def host_key() -> str:
    """Host name, kernel boot id and pid namespace: two processes with the same key can see each other's pids.

    A container restarted in a new pid namespace gets a new key: its previous life is then retired when its
    heartbeat lapses (instance_lease_seconds), not at once, because from here its pid proves nothing."""
    boot = _read("/proc/sys/kernel/random/boot_id")[:8]
    try:
        pidns = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        pidns = ""
    return ":".join(part for part in (socket.gethostname(), boot, pidns) if part)


def lease_owner(kind: str = "service") -> str:
    """A lease owner name for this process life, unique across hosts, containers and restarts.

    A pid alone is not: every container's main process is pid 1, so two instances on one store would each take
    the other's lease as their own (Graph subscriptions renewed twice, one reply inbox claim finished by another)."""
    return f"{kind}:{host_key()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(host_key(), pid, process_started(pid))


def process_alive(pid: int, started: str) -> bool:
    """Whether the process that registered (pid, started) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return True  # cannot tell: assume alive (its heartbeat lapsing retires it anyway)
    now_started = process_started(pid)
    return not (started and now_started and now_started != started)


class InstanceRegistry:
    """Registers this process, keeps its record alive and retires dead instances.

    Args:
        store: the shared store.
        lease_seconds: how long a record lives without a heartbeat (heartbeats come every third of it).
        clock / sleep: injected time (tests).
        identity: this process (default: the real one); is_alive: the liveness check for same-host instances.
        on_renamed: called with the new id when this process had to register again.
    """

    def __init__(
        self,
        store: Store,
        *,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        identity: ProcessIdentity | None = None,
        is_alive: Callable[[int, str], bool] = process_alive,
        on_renamed: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._lease = lease_seconds
        self._clock = clock
        self._sleep = sleep
        self._me = identity or this_process()
        self._is_alive = is_alive
        self.on_renamed = on_renamed
        self._record: Instance | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        if self._record is None:
            raise RuntimeError("the instance is not registered yet (call start)")
        return self._record.id

    def _new_id(self) -> str:
        return f"{socket.gethostname()}:{self._me.pid}:{uuid.uuid4().hex[:8]}"

    async def _register(self) -> None:
        now = self._clock()
        record = Instance(id=self._new_id(), host=self._me.host, pid=self._me.pid, pid_started=self._me.pid_started,
                          started_at=now, expires_at=now + self._lease)
        await self._store.register_instance(record)
        self._record = record

    async def start(self) -> str:
        """Retire the dead (a previous life of this service first of all), register, start heartbeating."""
        await self.reap()
        await self._register()
        self._task = asyncio.create_task(self._heartbeat_loop(), name="instance-heartbeat")
        log.debug("registered as instance %s", self.id)
        return self.id

    async def stop(self) -> None:
        """Stop heartbeating and retire this instance: whatever the pipeline left leased is released now."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._record is not None:
            try:
                await self._store.retire_instance(self._record, reason="stopped", now=self._clock())
            except StoreUnavailable:
                log.warning("store unavailable: instance %s is retired when its heartbeat lapses", self._record.id)

    async def reap(self) -> int:
        """Retire every instance known to be dead; returns how many events went back to the queue."""
        now = self._clock()
        released = 0
        for other in await self._store.list_instances():
            if self._record is not None and other.id == self._record.id:
                continue
            if other.expires_at <= now:
                reason = "its heartbeat lapsed"
            elif other.host == self._me.host and not self._is_alive(other.pid, other.pid_started):
                reason = f"process {other.pid} on this host has exited"
            else:
                continue
            count = await self._store.retire_instance(other, reason=reason, now=now)
            if count is not None:
                released += count
                log.warning("retired instance %s (%s); %d leased event(s) back in the queue", other.id, reason, count)
        return released

    async def heartbeat(self) -> None:
        """One beat (the loop's body; tests call it directly)."""
        assert self._record is not None
        expires = self._clock() + self._lease
        try:
            await self._store.heartbeat_instance(self._record.id, expires_at=expires, now=self._clock())
            self._record = replace(self._record, expires_at=expires)
        except LeaseLost:
            old = self._record.id
            await self._register()
            log.error("instance %s was retired while it was unreachable; continuing as %s", old, self._record.id)
            if self.on_renamed is not None:
                self.on_renamed(self._record.id)
        await self.reap()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._sleep(self._lease / 3)
            try:
                await self.heartbeat()
            except StoreUnavailable as exc:
                log.warning("store unavailable; instance heartbeat failed: %s", exc)
            except Exception:
                log.exception("instance heartbeat failed")

"""The last success and the last failure per upstream service (F&O, Entra, Bot Connector, Graph), for the status
page; fed by the outbound trace (connector/ops/outbound.py) and the token sources."""

from __future__ import annotations

from dataclasses import dataclass

UPSTREAMS = ("fno", "entra", "bot_connector", "graph")


@dataclass
class Outcome:
    at: float
    detail: str


@dataclass
class UpstreamState:
    last_success: Outcome | None = None
    last_failure: Outcome | None = None


class Upstreams:
    def __init__(self) -> None:
        self.state: dict[str, UpstreamState] = {name: UpstreamState() for name in UPSTREAMS}

    def success(self, service: str, at: float, detail: str = "") -> None:
        self.state.setdefault(service, UpstreamState()).last_success = Outcome(at, detail)

    def failure(self, service: str, at: float, detail: str) -> None:
        self.state.setdefault(service, UpstreamState()).last_failure = Outcome(at, detail)

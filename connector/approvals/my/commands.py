"""What a typed 1:1 message asks for: the list, the daily summary on/off, or help (anything else).

Teams sends a command picked from the bot's menu as its title text, and a channel @mention as `<at>Bot</at> text`;
both are normalised the same way (tags dropped, case folded, whitespace collapsed) before the configured words of
`[approvals.commands]` are compared.
"""

from __future__ import annotations

import enum
import html
import re
from dataclasses import dataclass

from connector.approvals.config import CommandWords

_TAG = re.compile(r"<at>.*?</at>|<[^>]+>", re.IGNORECASE | re.DOTALL)


class Command(str, enum.Enum):
    MY_LIST = "my-list"
    DAILY_ON = "daily-on"
    DAILY_OFF = "daily-off"
    HELP = "help"  # asked for help
    UNKNOWN = "unknown"  # anything else: answered with help too


@dataclass(frozen=True)
class Parsed:
    command: Command
    text: str  # the normalised text


def normalise(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text or "")).casefold().split()).strip(" .!")


def _words(values: list[str]) -> set[str]:
    return {normalise(v) for v in values if normalise(v)}


def parse(text: str, words: CommandWords) -> Parsed:
    said = normalise(text)
    for prefix in sorted(_words(words.my_approvals), key=len, reverse=True):
        if said == prefix:
            return Parsed(Command.MY_LIST, said)
        if said.startswith(prefix + " "):
            rest = said[len(prefix) + 1:].split()
            if len(rest) == 2 and rest[0] in _words(words.daily):
                if rest[1] in _words(words.on):
                    return Parsed(Command.DAILY_ON, said)
                if rest[1] in _words(words.off):
                    return Parsed(Command.DAILY_OFF, said)
            return Parsed(Command.UNKNOWN, said)
    if said in _words(words.help):
        return Parsed(Command.HELP, said)
    return Parsed(Command.UNKNOWN, said)

"""The Teams half of the sandbox: Bot Framework channel + Connector REST + a Teams-like page, and a Graph stand-in.

Written from ../shared/reference/teams.md; imports nothing of bot/, dynamics/, cards/ or connector/.
"""

from sandbox.teams.keys import DEFECTS, ChannelKeys
from sandbox.teams.server import RunningTeams, start_teams

__all__ = ["DEFECTS", "ChannelKeys", "RunningTeams", "start_teams"]

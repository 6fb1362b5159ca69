"""Typed approval replies: the Graph subscription manager, the notification endpoints, the reply parser and the
resync, and the bot feed's reply path. Every decision goes through connector.approvals.service (the press path)."""

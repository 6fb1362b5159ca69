"""What every sandbox admin API shares: reading a JSON object body, refusing anything else with a JSON 400."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is {}."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise bad_request("body must be JSON") from None
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object")
    return data

"""Reading JSON bodies at the boundary (the size limit is enforced by api.limits)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from api.errors import MalformedJson


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise MalformedJson("the body is empty; send a JSON document")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc}") from None

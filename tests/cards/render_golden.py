"""The render outputs the byte-identity test compares against: every template × variant × size limit, as digests.

`python tests/cards/render_golden.py > tests/cards/render_golden.json` regenerates the file; it was generated from
main before the render path was made lean (measure once, no deep copy), so the test proves the output unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from card_variants import all_cases, case  # noqa: E402

from cards.render import render  # noqa: E402

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
# The default limit, and limits small enough to cut lines, then texts, then fall back to the minimal card.
LIMITS = (28_000, 6_000, 2_500, 700)


def digest(name: str, label: str, max_bytes: int) -> dict[str, Any]:
    out = render(name, case(name, label), max_bytes=max_bytes, now=NOW)
    text = json.dumps(out.card, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "bytes": out.bytes,
            "lines_shown": out.lines_shown, "lines_dropped": out.lines_dropped, "shrunk": list(out.shrunk)}


def golden() -> dict[str, Any]:
    return {f"{name}/{label}/{limit}": digest(name, label, limit)
            for name, label in all_cases() for limit in LIMITS}


if __name__ == "__main__":
    json.dump(golden(), sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")

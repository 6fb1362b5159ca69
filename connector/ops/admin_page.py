"""The status page's HTML: server-rendered, no script, every value escaped; the 24-hour chart is inline SVG."""

from __future__ import annotations

import html
import time

from connector.ops.status import StatusData

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.9rem}th{background:#f3f3f3}
.bad{color:#a00}.ok{color:#060}form.inline{display:inline}h2{margin-top:1.5rem}"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(at: float, now: float) -> str:
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(at))}Z ({_ago(now - at)} ago)"


def _table(head: list[str], rows: list[list[str]], empty: str, ident: str) -> str:
    if not rows:
        return f'<p id="{ident}" class="empty">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{ident}"><tr>{th}</tr>{body}</table>'


def _chart(recent: list[tuple[str, str, int]]) -> str:
    if not recent:
        return '<p id="chart" class="empty">No events in the last 24 hours.</p>'
    top = max(n for _, _, n in recent)
    bar_h, width, label_w = 18, 300, 360
    parts = []
    for i, (env, kind, n) in enumerate(recent):
        y = i * (bar_h + 4)
        w = max(1, int(width * n / top))
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{_e(env)} · {_e(kind)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#4a78c2">'
                     f'<title>{_e(n)}</title></rect>'
                     f'<text x="{label_w + w + 4}" y="{y + 13}" font-size="12">{n}</text>')
    height = len(recent) * (bar_h + 4)
    return (f'<svg id="chart" role="img" aria-label="events by environment and type, last 24 hours" '
            f'width="{label_w + width + 60}" height="{height}">{"".join(parts)}</svg>')


def status_page(data: StatusData, csrf: str) -> str:
    now = data.now
    states = _table(["state", "events"], [[_e(k), _e(v)] for k, v in sorted(data.by_state.items())],
                    "No events.", "queue")
    parked = _table(
        ["event", "environment", "type", "reason", "parked", ""],
        [[_e(p["id"]), _e(p["environment"]), _e(p["type"]), _e(p["reason"]), _e(_when(p["at"], now)),
          f'<form class="inline replay" method="post" action="/admin/replay">'
          f'<input type="hidden" name="csrf" value="{_e(csrf)}"><input type="hidden" name="event_id" '
          f'value="{_e(p["id"])}"><button type="submit">Replay</button></form>'] for p in data.parked],
        "No parked events.", "parked")
    channels = _table(["channel", "cards queued"], [[_e(c.channel), _e(c.queued)] for c in data.channels],
                      "No cards waiting.", "pacing")
    approvals = _table(["environment", "work item", "subject", "approver", "waiting"],
                       [[_e(a["environment"]), _e(a["work_item_id"]), _e(a["subject"]), _e(a["approver"]),
                         _e(_ago(a["age"]))] for a in data.approvals],
                       "No pending approvals.", "approvals")
    ups = []
    for name, st in data.upstreams.items():
        ok, bad = st["success"], st["failure"]
        ups.append([_e(name),
                    f'<span class="ok">{_e(_when(ok.at, now))}</span>' if ok else "never",
                    f'<span class="bad">{_e(_when(bad.at, now))}: {_e(bad.detail)}</span>' if bad else "none"])
    upstreams = _table(["service", "last success", "last failure"], ups, "", "upstreams")
    installs = _table(["install", "scope", "team", "channels", "tenant"],
                      [[_e(i["id"]), _e(i["scope"]), _e(i["team"]), _e(i["channels"]), _e(i["tenant"])]
                       for i in data.installs], "The Teams app is not installed anywhere yet.", "installs")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ml-connector status</title>
<meta name="referrer" content="same-origin"><style>{_STYLE}</style></head><body>
<h1>ml-connector status</h1>
<form class="inline" method="post" action="/admin/logout"><input type="hidden" name="csrf" value="{_e(csrf)}">
<button type="submit">Sign out</button></form>
<h2>Queue</h2>{states}
<h2>Parked events</h2>{parked}
<h2>Events in the last 24 hours</h2>{_chart(data.recent)}
<h2>Teams pacing</h2><p id="delivered">Posted since start: {data.posts} cards, {data.digests} digests.</p>{channels}
<h2>Pending approvals</h2>{approvals}
<h2>Upstream services</h2>{upstreams}
<h2>Installs</h2>{installs}
</body></html>"""


def login_page(message: str = "", *, entra: bool = False) -> str:
    note = f'<p id="message" class="bad">{_e(message)}</p>' if message else ""
    microsoft = '<p><a id="signin-entra" href="/admin/signin">Sign in with Microsoft</a></p>' if entra else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ml-connector sign-in</title>
<style>{_STYLE}</style></head><body><h1>ml-connector status</h1>{note}{microsoft}
<form id="login" method="post" action="/admin/login"><label>Admin token
<input type="password" name="token" autocomplete="current-password"></label> <button type="submit">Sign in</button>
</form><p>Create the token with <code>ml-connector ops admin-token</code> on the service's host.</p></body></html>"""

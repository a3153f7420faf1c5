"""The web UI's HTML: one page of sections, and the preview of a contribution change.

Plain semantic HTML (landmarks, headings, captioned tables, labelled inputs), no script;
every value comes from the control API and is escaped here. WCAG 2.1 AA is checked with
axe-core in tests/integration/test_webui_browser.py.

The chart is inline SVG: a horizontal bar per figure with its value written beside it, so it
never relies on colour or length alone (WCAG 1.4.1); bars have at least 3:1 contrast against
the page (1.4.11); `role="img"` with a title and a description stating every number (1.1.1).
"""

from __future__ import annotations

from html import escape
from typing import Any

from rms.entitlement.arithmetic import format_size

SECTIONS = (
    ("entitlement", "Contribution and entitlement"),
    ("change", "Change your contribution"),
    ("pool", "Storage pool"),
    ("vpns", "VPN membership and peers"),
    ("audits", "Audit history"),
    ("ledger", "Usage ledger"),
)


def _e(value: object) -> str:
    return escape(str(value))


def _size(value: object) -> str:
    return format_size(value) if isinstance(value, int) and value >= 0 else "unknown"


def _cores(value: object) -> str:
    return f"{value / 1000:g} cores" if isinstance(value, int) else "unknown"


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _percent(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{100 * value:.2f} %"
    return "unknown"


def _table(caption: str, head: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    th = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{th}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def document(title: str, body: str) -> str:
    """A whole page around `body`."""
    nav = "".join(f'<li><a href="/#{key}">{_e(name)}</a></li>' for key, name in SECTIONS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><link rel="stylesheet" href="/style.css"></head><body>'
        '<a class="skip" href="#main">Skip to the content</a>'
        f'<header><p class="brand">True Cloud</p><nav aria-label="Sections"><ul>{nav}</ul></nav>'
        f'</header><main id="main" tabindex="-1">{body}</main>'
        "<footer><p>Served by <code>rms ui</code> on this computer only.</p></footer>"
        "</body></html>"
    )


def _section(key: str, content: str) -> str:
    title = dict(SECTIONS)[key]
    return (
        f'<section id="{key}" aria-labelledby="{key}-h"><h2 id="{key}-h">{_e(title)}</h2>'
        f"{content}</section>"
    )


def entitlement_section(ent: dict[str, Any]) -> str:
    """The chart and the figures behind it."""
    c, e = _obj(ent.get("contribution")), _obj(ent.get("entitlement"))
    bars = [
        ("Storage offered", c.get("storage_bytes", 0)),
        ("Verified", c.get("verified_storage_bytes", 0)),
        ("Your entitlement", e.get("storage_bytes", 0)),
    ]
    bars = [(label, v if isinstance(v, int) else 0) for label, v in bars]
    probation = _obj(ent.get("probation"))
    rows = [
        ["Storage offered", _size(c.get("storage_bytes"))],
        ["Storage verified (passing audits)", _size(c.get("verified_storage_bytes"))],
        ["CPU offered", _cores(c.get("cpu_millicores"))],
        ["Availability", _percent(ent.get("availability"))],
        ["Ratio", str(ent.get("ratio"))],
        ["Probation", "yes" if probation.get("active") else "no"],
        ["Storage entitlement", _size(e.get("storage_bytes"))],
        ["CPU entitlement", _cores(e.get("cpu_millicores"))],
    ]
    chart = contribution_chart(bars, "Storage: what you offer and what you may use")
    figure = (
        f"<figure>{chart}<figcaption>What this node offers, the part that counts, and the "
        "cloud storage it may use. The table below gives the same figures.</figcaption></figure>"
    )
    table = _table("Contribution and entitlement", ["Figure", "Value"], rows, "")
    return _section("entitlement", figure + table)


def change_section(ent: dict[str, Any], csrf: str, error: str | None = None) -> str:
    """The form that changes the contribution (a preview comes first)."""
    c = _obj(ent.get("contribution"))
    current = _size(c.get("storage_bytes"))
    cores = c.get("cpu_millicores", 0) / 1000 if isinstance(c.get("cpu_millicores"), int) else 0
    alert = f'<p class="error" role="alert" id="storage-error">{_e(error)}</p>' if error else ""
    described = "storage-hint storage-error" if error else "storage-hint"
    invalid = ' aria-invalid="true"' if error else ""
    return _section(
        "change",
        f'{alert}<form method="post" action="/contribution">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<p><label for="storage">Storage to contribute</label>'
        f'<input id="storage" name="storage" type="text" value="{_e(current)}" required '
        f'autocomplete="off" aria-describedby="{described}"{invalid}></p>'
        '<p id="storage-hint" class="hint">For example 20 GiB, 500 GB or 1.5 TiB.</p>'
        f'<p><label for="cpu">CPU cores to contribute</label>'
        f'<input id="cpu" name="cpu" type="number" min="0" max="4096" step="0.25" '
        f'value="{cores:g}" required></p>'
        '<p><button type="submit">Show the new entitlement</button></p></form>',
    )


def pool_section(pool: object) -> str:
    """The CFS pool's health and its volumes, with where each lives."""
    if not isinstance(pool, dict):
        return _section("pool", "<p>This node has no storage pool yet.</p>")
    state = f"<p>Pool <strong>{_e(pool.get('name', '?'))}</strong> is {_e(pool.get('state'))}"
    if isinstance(pool.get("size_bytes"), int):
        state += f", {_size(pool.get('used_bytes'))} of {_size(pool.get('size_bytes'))} used"
    state += ".</p>"
    rows = [
        [
            str(v.get("slot")),
            str(v.get("provider", ""))[:16],
            str(v.get("zfs_state")),
            str(v.get("state")),
        ]
        for v in pool.get("volumes", [])
        if isinstance(v, dict)
    ]
    table = _table(
        "Volumes of the pool",
        ["Slot", "Provider", "ZFS state", "Lease"],
        rows,
        "The pool has no volumes.",
    )
    problem = f'<p class="error">{_e(pool["problem"])}</p>' if pool.get("problem") else ""
    return _section("pool", state + problem + table)


def vpn_section(vpns: object) -> str:
    """Management VPNs and their peers with handshake ages."""
    if not isinstance(vpns, list) or not vpns:
        return _section("vpns", "<p>This node is in no management VPN yet.</p>")
    parts = []
    for vpn in (v for v in vpns if isinstance(v, dict)):
        peers = [p for p in vpn.get("peers", []) if isinstance(p, dict)]
        rows = [
            [
                str(p.get("node_id")),
                str(p.get("address")),
                "never" if p.get("handshake_age_s") is None else f"{p['handshake_age_s']} s ago",
            ]
            for p in peers
        ]
        caption = (
            f"VPN {str(vpn.get('uuid'))[:8]}: {vpn.get('role')}, "
            f"{vpn.get('members')} members, address {vpn.get('address')}"
        )
        parts.append(_table(caption, ["Peer", "Address", "Last handshake"], rows, caption))
    return _section("vpns", "".join(parts))


def audit_section(audits: dict[str, Any]) -> str:
    """This node's own standing and the latest audit reports it holds."""
    own = _obj(audits.get("own"))
    head = (
        f"<p>This node's standing: <strong>{_e(own.get('standing', 'ok'))}</strong> "
        f"(score {_e(own.get('score', 1.0))}).</p>"
    )
    rows = [
        [
            str(h.get("kind")),
            str(h.get("auditor", ""))[:16],
            str(h.get("provider", ""))[:16],
            str(h.get("round")),
            f"{h.get('checked', 0) - h.get('failed', 0)} of {h.get('checked')}",
        ]
        for h in audits.get("history", [])
        if isinstance(h, dict)
    ]
    table = _table(
        "Latest audit reports",
        ["Kind", "Auditor", "Provider", "Round", "Passed"],
        rows,
        "No audit reports yet.",
    )
    return _section("audits", head + table)


def _ledger_state(ledger: dict[str, Any]) -> str:
    if ledger.get("verified") is None:
        return "is being verified"
    return "verifies" if ledger.get("verified") else f"does not verify: {ledger.get('problem')}"


def ledger_section(ledger: object) -> str:
    """What the signed receipts say this node provided and used, and whether they verify."""
    if not isinstance(ledger, dict):
        return _section("ledger", "<p>No ledger on this node.</p>")
    totals = _obj(ledger.get("totals"))
    provided, used = _obj(totals.get("provided")), _obj(totals.get("used"))
    gib_hours = 3600 * 2**30

    def amount(row: dict[str, Any], resource: str) -> str:
        value = row.get(resource, 0)
        if not isinstance(value, int):
            return "unknown"
        if resource == "storage":
            return f"{value / gib_hours:.2f} GiB-hours"
        return f"{value / 3_600_000:.2f} core-hours"

    rows = [[r, amount(provided, r), amount(used, r)] for r in ("storage", "cpu")]
    state = _ledger_state(ledger)
    head = f"<p>{_e(ledger.get('count', 0))} receipts; the ledger {_e(state)}.</p>"
    table = _table("Signed usage receipts", ["Resource", "Provided", "Used"], rows, "")
    return _section("ledger", head + table)


def home(status: dict[str, Any], audits: dict[str, Any], csrf: str, flash: str | None) -> str:
    """The whole page."""
    ent = _obj(status.get("entitlement"))
    note = f'<p class="flash" role="status">{_e(flash)}</p>' if flash else ""
    body = (
        f"<h1>Node {_e(str(status.get('node_id', '?'))[:16])}</h1>{note}"
        f"<p>State: <strong>{_e(status.get('state'))}</strong>.</p>"
        + "".join(f'<p class="error">{_e(p)}</p>' for p in status.get("problems", []))
        + entitlement_section(ent)
        + change_section(ent, csrf)
        + pool_section(status.get("pool"))
        + vpn_section(status.get("vpns"))
        + audit_section(audits)
        + ledger_section(status.get("ledger"))
    )
    return document("True Cloud node", body)


def preview(result: dict[str, Any], offer: dict[str, int], csrf: str) -> str:
    """The consequence of a change, before it applies."""
    new, now = _obj(result.get("entitlement")), _obj(result.get("current"))
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{int(v)}">' for k, v in sorted(offer.items())
    )
    body = (
        "<h1>Change your contribution</h1>"
        f"<p>If this node contributes <strong>{_size(offer.get('storage_bytes'))}</strong> "
        f"of storage and <strong>{_cores(offer.get('cpu_millicores'))}</strong> of CPU:</p>"
        + _table(
            "Entitlement now and after the change",
            ["Figure", "Now", "After"],
            [
                [
                    "Storage entitlement",
                    _size(now.get("storage_bytes")),
                    _size(new.get("storage_bytes")),
                ],
                [
                    "CPU entitlement",
                    _cores(now.get("cpu_millicores")),
                    _cores(new.get("cpu_millicores")),
                ],
            ],
            "",
        )
        + '<form method="post" action="/contribution/apply">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">{hidden}'
        '<p><button type="submit">Apply this contribution</button> '
        '<a href="/#change">Keep the current contribution</a></p></form>'
    )
    return document("Change your contribution - True Cloud", body)


def message(title: str, text: str) -> str:
    """A page that only says something (errors, the login hint)."""
    return document(title, f"<h1>{_e(title)}</h1><p>{_e(text)}</p>")


WIDTH = 640
BAR_LEFT = 190
BAR_MAX = 330
ROW = 44
# Dark blue, dark green and dark purple: each over 7:1 against white.
COLOURS = ("#0b4f9c", "#1e6b34", "#5b2a86")


def contribution_chart(bars: list[tuple[str, int]], title: str) -> str:
    """An SVG bar chart of (label, bytes) pairs, scaled to the largest."""
    largest = max([value for _, value in bars] + [1])
    height = ROW * len(bars) + 16
    summary = "; ".join(f"{label}: {format_size(value)}" for label, value in bars)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
    ]
    for row, (label, value) in enumerate(bars):
        y = 8 + row * ROW
        length = 0 if value <= 0 else max(2, round(BAR_MAX * value / largest))
        colour = COLOURS[row % len(COLOURS)]
        parts += [
            f'<text x="0" y="{y + 22}" class="chart-label">{escape(label)}</text>',
            f'<rect x="{BAR_LEFT}" y="{y + 4}" width="{length}" height="26" fill="{colour}"/>',
            f'<text x="{BAR_LEFT + length + 8}" y="{y + 22}" class="chart-value">'
            f"{escape(format_size(value))}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)

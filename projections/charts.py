"""Hand-written SVG charts for audit reports (no plotting dependency; text is escaped)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from xml.sax.saxutils import escape

_WIDTH, _HEIGHT, _LEFT, _BOTTOM, _TOP = 760, 320, 60, 60, 40
_COLOURS = {"provided": "#3b7dd8", "not_provided": "#d8553b"}


def monthly_chart(report: dict[str, Any]) -> str:
    """Stacked bars: requests per JST month (both roles), provided vs not provided."""
    per_month: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in report["counts"]:
        per_month[row["month"]][row["outcome"]] += row["n"]
    months = sorted(per_month)
    title = f"{report['agency']['name_en']} ({report['agency']['code']}): provisions per month"
    parts = _open(title)
    if not months:
        return "".join(parts + [_text(_WIDTH / 2, _HEIGHT / 2, "no provisions"), "</svg>\n"])
    top = max(sum(v.values()) for v in per_month.values()) or 1
    plot_w, plot_h = _WIDTH - _LEFT - 20, _HEIGHT - _BOTTOM - _TOP
    step = plot_w / len(months)
    parts += _axis(top, plot_h)
    for i, month in enumerate(months):
        x, base = _LEFT + i * step + step * 0.1, float(_HEIGHT - _BOTTOM)
        for outcome in ("provided", "not_provided"):
            n = per_month[month].get(outcome, 0)
            h = plot_h * n / top
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{step * 0.8:.1f}" '
                         f'height="{h:.1f}" fill="{_COLOURS[outcome]}" data-month="{month}" '
                         f'data-outcome="{outcome}" data-n="{n}"><title>{month} '
                         f'{outcome}: {n}</title></rect>')
        parts.append(_text(x + step * 0.4, _HEIGHT - _BOTTOM + 16, month[2:], size=10))
    parts += _legend()
    return "".join(parts + ["</svg>\n"])


# Colour-blind-safe palette (Okabe–Ito, darkened for contrast against white).
_PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#8a6d00", "#56b4e9", "#6a3d9a",
            "#b15928", "#1f78b4", "#33a02c"]


def affair_chart(report: dict[str, Any], lang: str = "en", top: int = 8) -> str:
    """Stacked bars: requests per JST month (both roles) by affair; the ``top`` busiest affairs
    by name, the rest as "other". Each bar segment carries ``data-month``, ``data-affair`` and
    ``data-n``, so a reader (or a test) can check the drawing against the report's counts."""
    totals: dict[str, int] = defaultdict(int)
    per_month: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in report["counts"]:
        totals[row["affair"]] += row["n"]
    ranked = [a for a, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    shown = ranked[:top]
    for row in report["counts"]:
        key = row["affair"] if row["affair"] in shown else "other"
        per_month[row["month"]][key] += row["n"]
    series = shown + (["other"] if len(ranked) > top else [])
    months = sorted(per_month)
    name = report["agency"].get(f"name_{lang}") or report["agency"]["code"]
    title = (f"{name}: 月別・事務別の件数" if lang == "ja"
             else f"{name}: provisions per month by affair")
    height = _HEIGHT + 22 * len(series)
    parts = _open(title, height)
    if not months:
        return "".join(parts + [_text(_WIDTH / 2, _HEIGHT / 2, "—"), "</svg>\n"])
    peak = max(sum(v.values()) for v in per_month.values()) or 1
    plot_w, plot_h = _WIDTH - _LEFT - 20, _HEIGHT - _BOTTOM - _TOP
    step = plot_w / len(months)
    parts += _axis(peak, plot_h)
    colours = {a: _PALETTE[i % len(_PALETTE)] for i, a in enumerate(series)}
    colours["other"] = "#6b6b6b"
    for i, month in enumerate(months):
        x, base = _LEFT + i * step + step * 0.1, float(_HEIGHT - _BOTTOM)
        for affair in series:
            n = per_month[month].get(affair, 0)
            if not n:
                continue
            h = plot_h * n / peak
            base -= h
            label = _affair_label(report, affair, lang)
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{step * 0.8:.1f}" '
                         f'height="{h:.1f}" fill="{colours[affair]}" data-month="{month}" '
                         f'data-affair="{escape(affair)}" data-n="{n}"><title>{month} '
                         f'{escape(label)}: {n}</title></rect>')
        parts.append(_text(x + step * 0.4, _HEIGHT - _BOTTOM + 16, month[2:], size=10))
    for i, affair in enumerate(series):
        y = _HEIGHT - 10 + 22 * i
        parts.append(f'<rect x="{_LEFT}" y="{y - 11}" width="12" height="12" '
                     f'fill="{colours[affair]}"/>')
        label = _affair_label(report, affair, lang)
        parts.append(_text(_LEFT + 18, y, label[:70] + ("…" if len(label) > 70 else ""),
                           anchor="start", size=11))
    return "".join(parts + ["</svg>\n"])


def _affair_label(report: dict[str, Any], affair: str, lang: str) -> str:
    if affair == "other":
        return "その他" if lang == "ja" else "other"
    found = report.get("affairs", {}).get(affair, {})
    return f"{affair} {found.get(lang) or ''}".strip()


def operator_chart(report: dict[str, Any], limit: int = 20) -> str:
    """Horizontal bars: requests per staff operator over the whole report (top ``limit``)."""
    totals: dict[str, int] = defaultdict(int)
    for row in report["operators"]:
        totals[row["operator"]] += row["n"]
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    height = _TOP + 24 * max(len(ranked), 1) + 30
    title = f"{report['agency']['name_en']} ({report['agency']['code']}): requests per operator"
    parts = _open(title, height)
    flagged = {o["operator"] for o in report["anomalies"]["operator_outliers"]}
    top = max((n for _, n in ranked), default=1)
    for i, (operator, n) in enumerate(ranked):
        y = _TOP + i * 24
        w = (_WIDTH - 260) * n / top
        colour = "#d8553b" if operator in flagged else "#3b7dd8"
        parts.append(_text(170, y + 14, operator, anchor="end", size=11))
        parts.append(f'<rect x="180" y="{y}" width="{w:.1f}" height="18" fill="{colour}">'
                     f'<title>{escape(operator)}: {n}</title></rect>')
        parts.append(_text(186 + w, y + 14, str(n), anchor="start", size=11))
    return "".join(parts + ["</svg>\n"])


def _open(title: str, height: int = _HEIGHT) -> list[str]:
    return [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
         f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" role="img">'),
        f"<title>{escape(title)}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        _text(_WIDTH / 2, 24, title, size=14),
    ]


def _axis(top: int, plot_h: float) -> list[str]:
    out = []
    for k in range(5):
        value = top * k / 4
        y = _HEIGHT - _BOTTOM - plot_h * k / 4
        out.append(f'<line x1="{_LEFT}" x2="{_WIDTH - 20}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
        label = f"{value:.0f}" if top >= 8 or value == int(value) else f"{value:.1f}"
        out.append(_text(_LEFT - 6, y + 4, label, anchor="end", size=10))
    return out


def _legend() -> list[str]:
    out = []
    for i, (name, colour) in enumerate(_COLOURS.items()):
        x = _LEFT + i * 140
        out.append(f'<rect x="{x}" y="{_HEIGHT - 24}" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 18, _HEIGHT - 14, name.replace("_", " "), anchor="start", size=11))
    return out


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 12) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
            f"{escape(text)}</text>")

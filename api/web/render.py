"""Rendering pages: one Jinja2 environment, the security headers every page carries.

Content-Security-Policy has no ``unsafe-inline``: all script is in static files under /static
(page data travels in ``<script type="application/json">`` blocks, which browsers never execute),
styles likewise; charts are inline SVG with presentation attributes, which CSP does not govern.
Nothing is loaded from another origin: no CDN, no web fonts, so the pages work offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from api.web import i18n, sessions

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Pages show personal records: never keep them in shared caches or the back-forward cache.
    "Cache-Control": "no-store",
}

# auto_reload off: the templates ship with the code, and checking each file's mtime on every
# render (a stat per template, extends and include) was an eighth of the list page's time.
_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                   auto_reload=False)


def _json_block(value: Any) -> Markup:
    # Inside <script type="application/json"> only "</" could end the element early.
    return Markup(json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                  .replace("</", "<\\/"))


_env.filters["json_block"] = _json_block


def language(request: Request) -> str:
    return i18n.pick(request.cookies.get(sessions.LANG_COOKIE))


def label_in(obj: Any, lang: str) -> str:
    """The label of an agency, affair or item in the page's language."""
    if isinstance(obj, dict):
        return str(obj.get(f"name_{lang}") or obj.get(lang) or obj.get("code") or obj.get("id"))
    name = getattr(obj, f"name_{lang}", None) or getattr(obj, lang, None)
    return str(name if name is not None else obj)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language(request)

    def t(key: str, **values: object) -> str:
        return i18n.translate(lang, key, **values)

    def label(obj: Any) -> str:
        return label_in(obj, lang)

    session = context.pop("session", None)
    html = _env.get_template(template).render(
        request=request, lang=lang, t=t, T=i18n.table(lang), label=label, session=session,
        csrf=sessions.csrf_token(request), path=request.url.path,
        query=request.url.query, **context)
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    sessions.ensure_csrf(response, request)
    return response

"""HTML pages of the SMART app: rendering, error pages, security headers, the browser cookie.

Every page is server-rendered (Jinja autoescaping on) with a strict CSP: no script at all,
styles only from our own ``/smart/static``, ``frame-ancestors`` from ``[smart]``
(the EHR embeds the app in an iframe), no ``X-Frame-Options``. Pages are ``no-store`` and send
no referrer (the view URL carries the view id; the callback URL a code).
"""

from __future__ import annotations

import typing as t

from flask import Response, g, render_template
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response as WerkzeugResponse

from smart_launch.config import SmartConfig


class SmartError(Exception):
    """A refusal shown as a readable page (never a stack trace)."""

    def __init__(self, status: int, title: str, message: str, log_reason: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message
        self.log_reason = log_reason  #: for the log only (never shown, never with secrets)


def render_page(
    template: str, config: SmartConfig, *, status: int, style_hashes: t.Sequence[str] = (), **context: t.Any
) -> Response:
    """Render a page; ``style_hashes`` allow its inline SVG styles (CSP ``'sha256-…'``)."""
    g.smart_style_hashes = tuple(style_hashes)
    body = render_template(template, **context)
    return Response(body, status=status, mimetype="text/html")


def content_security_policy(config: SmartConfig, style_hashes: t.Sequence[str] = ()) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(["style-src 'self'", *style_hashes]),
            "img-src 'self' data:",
            "form-action 'none'",
            "base-uri 'none'",
            f"frame-ancestors {config.csp_frame_ancestors()}",
        ]
    )


def apply_headers(response: Response, config: SmartConfig) -> Response:
    hashes = g.get("smart_style_hashes", ())
    response.headers["Content-Security-Policy"] = content_security_policy(config, hashes)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def browser_cookie(response: WerkzeugResponse, name: str, value: str, *, max_age: int) -> None:
    """Set the opaque browser-id cookie: Secure, HttpOnly, SameSite=None, Partitioned (CHIPS).

    Written with :func:`werkzeug.http.dump_cookie` plus ``Partitioned`` by hand, which works
    on every Werkzeug 3.x (``set_cookie(partitioned=...)`` is newer). Browsers send Secure
    cookies to ``http://127.0.0.1`` and ``http://localhost`` too, so development on loopback
    needs no other flags.
    """
    header = dump_cookie(
        name, value, max_age=max_age, path="/smart", secure=True, httponly=True, samesite="None"
    )
    if "partitioned" not in header.lower():
        header += "; Partitioned"
    response.headers.add("Set-Cookie", header)

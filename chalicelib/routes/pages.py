"""The few HTML pages the API itself shows a shopper's browser (web checkout): the result page and the error page.

Deliberately minimal and static: no script, no external resource, every value HTML-escaped. The element ids are an
interface (browser tests and merchants' scripts read them): ``order-status`` (text and ``data-status``: the order's
server-side status), ``out-trade-no`` and, on the error page, ``error``.
"""

from __future__ import annotations

from html import escape

HTML_HEADERS: dict[str, str | list[str]] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    # The return's query carries Alipay's signature and the order number: never sent on to another site.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}

_HEADLINES = {
    "TRADE_SUCCESS": "Payment received",
    "TRADE_FINISHED": "Payment received",
    "WAIT_BUYER_PAY": "Payment not confirmed yet",
    "TRADE_CLOSED": "Order closed",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2129}"
    "main{max-width:32rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:1.4rem;margin-top:0}code{font-size:.95rem}"
)


def _page(title: str, content: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><main>\n{content}\n</main></body></html>\n"
    )


def result_page(out_trade_no: str, status: str) -> str:
    """The order's status as the server holds it, after the shopper's return from Alipay."""
    headline = _HEADLINES.get(status, "Order status")
    note = (
        "<p>Alipay has not confirmed this payment to us yet. If you paid, it will show here shortly.</p>"
        if status == "WAIT_BUYER_PAY"
        else ""
    )
    return _page(
        headline,
        f"<h1>{escape(headline)}</h1>\n"
        f'<p>Order <code id="out-trade-no">{escape(out_trade_no)}</code></p>\n'
        f'<p>Status: <strong id="order-status" data-status="{escape(status)}">{escape(status)}</strong></p>\n'
        f"{note}",
    )


def error_page(status: int, code: str) -> str:
    """A refused return (forged, tampered, malformed) or a failure: never a success page."""
    if status < 500:
        message = "This payment return could not be verified. Nothing has been changed."
    else:
        message = "The payment status cannot be shown right now. Please try again in a moment."
    return _page(
        "Payment return refused" if status < 500 else "Temporarily unavailable",
        f'<h1 id="error" data-code="{escape(code)}">{escape(message)}</h1>\n'
        f"<p>Reference: <code>{status} {escape(code)}</code></p>",
    )

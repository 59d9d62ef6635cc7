"""Chalice app: routes and event handlers, wiring only."""

from __future__ import annotations

from chalice import Chalice

app = Chalice(app_name="alipay-global")


@app.route("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

"""What the browser tests share besides fixtures: how Chromium is launched, screenshots, the merchant's site."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.stack import PROJECT_DIR

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As the machine notes require: without the background-networking flags Chromium keeps calling out (updates, sync,
# safe browsing...), and this closed network refuses those connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_DIR / ".local" / "artifacts"
TIMEOUT_MS = 30_000

# Every screenshot taken in this run, printed at its end.
SCREENSHOTS: list[Path] = []


def screenshot(page: Page, name: str) -> Path:
    """Save what the browser shows now as ``.local/artifacts/<name>.png``; the path is printed at the end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)
    return path


class MerchantSite:
    """The merchant's web page on 127.0.0.1: whatever HTML it is given (e.g. the ``payment_form`` to submit)."""

    def __init__(self) -> None:
        self.html = "<!doctype html><title>merchant</title>"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/checkout"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

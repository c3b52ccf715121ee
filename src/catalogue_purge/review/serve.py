"""The reviewers' page: a small web server on loopback, beside the reviewer (the way `sam local`
and Label Studio run), with the reviewer's own credentials.

    GET  /              the page (review/page.html): everything inline, nothing from outside
    GET  /api/next      the reviewer's claim in force, or the next item claimed for them
    POST /api/decide    a decision on the item the reviewer holds
    POST /api/release   give the claim back

The page shows the listing's title and description (the live ones, and whether they changed
since the item was queued) with every matched term highlighted, the score and each piece of
evidence with its weight, the clause, the seller's other queued listings and offences under
the policy, and the decision buttons (keyboard: d, k, e, s; r for the reason).

Only this machine can use it: it listens on 127.0.0.1, answers only requests whose Host names
it (no DNS rebinding), and the API wants the page's own token in a header (no other site's
page can post a decision through the reviewer's browser). Titles and descriptions are put into
the page as text, never as markup, and the Content-Security-Policy lets only the page's own
inline script and style run.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from catalogue_purge.enforce.catalogue import Catalogue
from catalogue_purge.enforce.penalties import Ledger
from catalogue_purge.review.queue import Item, Order, QueueError, ReviewQueue

MAX_BODY = 64 * 1024


@dataclass
class Desk:
    """What the page works with: the queue, the reviewer, and the listings and ledger it reads."""

    queue: ReviewQueue
    reviewer: str
    tier: int = 1
    order: Order = Order.OLDEST
    catalogue: Catalogue | None = None
    ledger: Ledger | None = None

    def rules(self) -> list[dict]:
        return [
            {"id": r.id, "clause": r.clause or "", "description": r.description}
            for r in self.queue.policy.document.rules
        ]

    def view(self, item: Item) -> dict:
        live = self.catalogue.get(item.listing_id) if self.catalogue else None
        others = [
            {
                "listing_id": o.listing_id,
                "title": o.title,
                "state": o.state.value,
                "decision": (o.final or {}).get("decision"),
            }
            for o in self.queue.of_seller(item.seller_id)
            if o.listing_id != item.listing_id
        ][:20]
        offences = (
            [
                {
                    "run_id": o.get("run_id"),
                    "at": str(o.get("at")),
                    "listings": len(o.get("listings") or []),
                }
                for o in self.ledger.offences(item.seller_id, self.queue.policy.id)
            ]
            if self.ledger
            else []
        )
        thresholds = self.queue.policy.document.thresholds
        return {
            "item": item.public(),
            "live": None
            if live is None
            else {
                "title": live.title,
                "description": live.description,
                "status": live.status.value,
                "updated_at": live.updated_at,
                "changed": live.updated_at != item.updated_at,
            },
            "seller": {"others": others, "offences": offences},
            "thresholds": {"delist": thresholds.delist, "review": thresholds.review},
        }

    def next(self) -> dict:
        items = self.queue.claim(self.reviewer, tier=self.tier, order=self.order)
        counts = self.queue.counts()
        if not items:
            return {"item": None, "counts": counts}
        return self.view(items[0]) | {"counts": counts}


def _page(token: str, nonce: str, desk: Desk) -> bytes:
    template = resources.files("catalogue_purge.review").joinpath("page.html").read_text("utf-8")
    config = json.dumps(
        {
            "token": token,
            "reviewer": desk.reviewer,
            "tier": desk.tier,
            "policy": desk.queue.policy.id,
            "rules": desk.rules(),
            "steps": [s.id for s in desk.queue.policy.document.penalties.ladder],
        }
    ).replace("<", "\\u003c")  # inside a <script>: no "</script>" can end it
    return template.replace("{{NONCE}}", nonce).replace("{{CONFIG}}", config).encode("utf-8")


class _Server(ThreadingHTTPServer):
    def __init__(self, desk: Desk, port: int):
        super().__init__(("127.0.0.1", port), _Handler)
        self.desk = desk
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()  # one queue call at a time from this page

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def make_server(desk: Desk, port: int = 0) -> ThreadingHTTPServer:
    """The page's server on 127.0.0.1 (port 0: a free one); serve_forever() it."""
    return _Server(desk, port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "catalogue-purge-review"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _host_ok(self) -> bool:
        port = self.server.port
        return self.headers.get("Host") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: dict) -> None:
        body = json.dumps(document, ensure_ascii=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _api_ok(self) -> bool:
        if not self._host_ok():
            self._json(HTTPStatus.FORBIDDEN, {"error": "this page answers on 127.0.0.1 only"})
            return False
        if not secrets.compare_digest(self.headers.get("X-Review-Token", ""), self.server.token):
            self._json(HTTPStatus.FORBIDDEN, {"error": "not this page's token: reload it"})
            return False
        return True

    def _page(self) -> None:
        if not self._host_ok():
            self._send(HTTPStatus.FORBIDDEN, b"loopback only", "text/plain")
            return
        nonce = secrets.token_urlsafe(16)
        csp = (
            "default-src 'none'; "
            f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'none'; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        self._send(
            HTTPStatus.OK,
            _page(self.server.token, nonce, self.server.desk),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
        )

    def do_GET(self) -> None:
        if self.path == "/":
            self._page()
        elif self.path == "/api/next":
            if self._api_ok():
                self._answer(self.server.desk.next)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"})
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"not JSON: {exc}"})
            return None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "not a JSON object"})
            return None
        return body

    def do_POST(self) -> None:
        desk = self.server.desk
        if self.path not in ("/api/decide", "/api/release"):
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            return
        if not self._api_ok():
            return
        body = self._body()
        if body is None:
            return
        if self.path == "/api/release":
            self._answer(
                lambda: {
                    "item": desk.queue.release(
                        str(body.get("listing_id")), desk.reviewer, int(body.get("version") or 0)
                    ).public()
                }
            )
        else:
            self._answer(lambda: {"item": _decide(desk, body).public()})

    def _answer(self, work: Any) -> None:
        try:
            with self.server.lock:
                answer = work()
            self._json(HTTPStatus.OK, answer)
        except QueueError as exc:
            self._json(HTTPStatus.CONFLICT, {"error": str(exc)})
        except (KeyError, ValueError, TypeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"bad request: {exc}"})


def _decide(desk: Desk, body: dict) -> Item:
    rules = body.get("rules") or []
    if not isinstance(rules, list):
        raise TypeError("rules: a list of rule ids")
    return desk.queue.decide(
        str(body["listing_id"]),
        reviewer=desk.reviewer,
        version=int(body["version"]),
        decision=str(body["decision"]),
        reason=str(body.get("reason") or ""),
        tier=desk.tier,
        rules=[str(r) for r in rules],
        evasion=bool(body["evasion"]) if "evasion" in body else None,
        exemption_expires=str(body["exemption_expires"]) if body.get("exemption_expires") else None,
        account_step=str(body["account_step"]) if body.get("account_step") else None,
    )

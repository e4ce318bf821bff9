"""A small CRM REST API that serves generated (or any export-folder) data, for tests and the demo.

It speaks what :class:`salespulse.sources.ApiSource` reads::

    GET /v1/<entity>?updated_since=<iso>&updated_before=<iso>&limit=<n>[&cursor=<c> | &page=<k>]
    Authorization: Bearer <token>
    -> 200 {"data": [...], "next_cursor": "..." | null, "page": k, "pages": n, "total": t}

Rows are ordered by (updated_at, key), so pages are stable. It can be told to misbehave, one fault per
request in the order given, either when started (``faults=[...]``, ``--faults 429,500,timeout``) or at
run time (``POST /_admin/faults`` with a JSON list): ``429`` (with Retry-After), ``500``, ``502``, ``503``,
``timeout`` (answers only after ``slow_seconds``), ``drop`` (closes the connection without answering),
``401``, ``404``. ``GET /_admin/stats`` tells how many requests and faults it has served.

Run it: ``python -m salespulse.crm_api --exports .data/exports --port 8765 --token demo-token``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from salespulse.model import ENTITIES, ENTITY_BY_NAME

log = logging.getLogger(__name__)
FAULTS = ("429", "500", "502", "503", "timeout", "drop", "401", "404")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, injected drop) leaves a broken pipe behind: expected here.
        log.debug("crm api: connection from %s ended early", client_address, exc_info=True)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"])


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: timestamps as ISO text, missing values as null."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return json.loads(out.to_json(orient="records", force_ascii=False, date_format="iso"))


class CrmApiServer:
    """A threaded HTTP server on 127.0.0.1 over a dict of entity frames. Use as a context manager."""

    def __init__(
        self,
        tables: dict[str, pd.DataFrame],
        token: str | None = "test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[str] = (),
        retry_after: float = 1.0,
        slow_seconds: float = 2.0,
        max_page_size: int = 5000,
    ) -> None:
        self.tables = {name: self._ordered(name, frame) for name, frame in tables.items()}
        self.token = token
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.max_page_size = max_page_size
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "faults": 0, "rows": 0}
        self.set_faults(faults)
        self._server = _QuietServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @classmethod
    def from_exports(cls, folder: Path, **kwargs: Any) -> CrmApiServer:
        tables = {e.name: pd.read_parquet(folder / f"{e.name}.parquet") for e in ENTITIES}
        return cls(tables, **kwargs)

    @staticmethod
    def _ordered(name: str, frame: pd.DataFrame) -> pd.DataFrame:
        entity = ENTITY_BY_NAME[name]
        frame = frame.copy()
        frame["_sort"] = pd.to_datetime(frame["updated_at"], errors="coerce", format="mixed")
        return frame.sort_values(["_sort", *entity.key], kind="stable", na_position="first").reset_index(
            drop=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_faults(self, faults: Iterable[str]) -> None:
        faults = [str(f).strip() for f in faults if str(f).strip()]
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {FAULTS}")
        with self._lock:
            self._faults = deque(faults)

    def _next_fault(self) -> str | None:
        with self._lock:
            self.stats["requests"] += 1
            if self._faults:
                self.stats["faults"] += 1
                return self._faults.popleft()
            return None

    def page(self, entity: str, query: dict[str, str]) -> dict[str, Any]:
        frame = self.tables[entity]
        keep = pd.Series(True, index=frame.index)
        if "updated_before" in query:
            keep &= frame["_sort"].isna() | (frame["_sort"] < pd.Timestamp(query["updated_before"]))
        if "updated_since" in query:
            keep &= frame["_sort"].isna() | (frame["_sort"] >= pd.Timestamp(query["updated_since"]))
        selected = frame[keep]
        limit = max(1, min(int(query.get("limit", 1000)), self.max_page_size))
        pages = max(1, -(-len(selected) // limit))
        if "page" in query:
            page = int(query["page"])
            offset = (page - 1) * limit
        else:
            offset = _decode_cursor(query["cursor"]) if query.get("cursor") else 0
            page = offset // limit + 1
        rows = selected.iloc[offset : offset + limit].drop(columns="_sort")
        following = offset + limit
        with self._lock:
            self.stats["rows"] += len(rows)
        return {
            "data": _json_rows(rows),
            "next_cursor": _encode_cursor(following) if following < len(selected) else None,
            "page": page,
            "pages": pages,
            "total": len(selected),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("crm api: " + format, *args)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _authorized(self) -> bool:
                if api.token is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {api.token}":
                    return True
                self._send(401, {"error": "missing or wrong bearer token"})
                return False

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                if urlsplit(self.path).path != "/_admin/faults":
                    self._send(404, {"error": f"no such endpoint {self.path}"})
                    return
                length = int(self.headers.get("Content-Length", 0))
                try:
                    api.set_faults(json.loads(self.rfile.read(length) or b"[]"))
                except ValueError as exc:
                    self._send(400, {"error": str(exc)})
                    return
                self._send(200, {"faults": list(api._faults)})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/_admin/stats":
                    self._send(200, dict(api.stats))
                    return
                fault = api._next_fault()
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    time.sleep(api.slow_seconds)
                elif fault == "429":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": f"{api.retry_after:g}"})
                    return
                elif fault in ("500", "502", "503", "401", "404"):
                    self._send(int(fault), {"error": f"injected fault {fault}"})
                    return
                if not self._authorized():
                    return
                segments = parts.path.strip("/").split("/")
                if len(segments) != 2 or segments[0] != "v1" or segments[1] not in api.tables:
                    self._send(404, {"error": f"no such resource {parts.path}; known: {sorted(api.tables)}"})
                    return
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                try:
                    body = api.page(segments[1], query)
                except (ValueError, KeyError) as exc:
                    self._send(400, {"error": f"bad query: {exc}"})
                    return
                self._send(200, body)

        return Handler

    def start(self) -> CrmApiServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CrmApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", type=Path, default=Path(".data/exports"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="demo-token")
    parser.add_argument("--faults", default="", help=f"comma-separated, in order; from {FAULTS}")
    args = parser.parse_args(argv)
    server = CrmApiServer.from_exports(
        args.exports, token=args.token, port=args.port, faults=args.faults.split(",")
    )
    print(f"CRM API on {server.url} (bearer token from --token)", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()

"""What the local REST stand-ins (Cloud Scheduler, Cloud Run Admin) share: Google's JSON error
body and one HTTP handler that routes every method to the stand-in's ``route``.

Google's REST APIs answer an error as ``{"error": {"code", "message", "status"}}`` (the
``google.rpc.Status`` mapping, https://cloud.google.com/apis/design/errors#http_mapping); the
client libraries raise ``google.api_core.exceptions`` from that body. A client asking
``$alt=json;enum-encoding=int`` (the REST transports of the generated clients do) wants enums as
numbers: the handler tells ``encode`` so.

Imports: the standard library only.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["ApiError", "JsonApiHandler"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the REST API reports as ``{"error": {"code", "message", "status"}}``."""

    def __init__(self, http: HTTPStatus, status: str, message: str) -> None:
        super().__init__(message)
        self.http = http
        self.status = status
        self.message = message

    @classmethod
    def invalid(cls, message: str) -> ApiError:
        return cls(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", message)

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        return cls(HTTPStatus.NOT_FOUND, "NOT_FOUND", message)

    @classmethod
    def unimplemented(cls, message: str) -> ApiError:
        return cls(HTTPStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": int(self.http), "message": self.message, "status": self.status}}


class JsonApiHandler(BaseHTTPRequestHandler):
    """Every method goes to :meth:`route` with the unquoted path, the query and the raw body;
    its dict is sent as JSON (through :meth:`encode`), an :class:`ApiError` as Google's error
    body, anything else as a 500 (logged)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> dict[str, Any]:
        raise ApiError.not_found(f"no such method: {method} {path}")

    def encode(self, body: dict[str, Any], *, int_enums: bool) -> Any:
        """``body`` as sent; ``int_enums``: the client asked for enums as numbers."""
        return body

    @staticmethod
    def json_object(raw: bytes) -> dict[str, Any]:
        """A request body that must be a JSON object (empty: ``{}``)."""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError.invalid(f"Invalid JSON payload received. {exc}") from None
        if not isinstance(body, dict):
            raise ApiError.invalid("Invalid JSON payload received: expected an object.")
        return body

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        int_enums = any("enum-encoding=int" in v for v in query.get("$alt", []))
        try:
            out = self.route(method, unquote(url.path), query, raw)
        except ApiError as err:
            self._send(err.http, err.body())
            return
        except Exception as exc:
            log.exception("%s %s failed", method, self.path)
            error = ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", str(exc))
            self._send(error.http, error.body())
            return
        self._send(HTTPStatus.OK, self.encode(out, int_enums=int_enums))

    def _send(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

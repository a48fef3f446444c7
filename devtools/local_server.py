"""The local HTTP server `make run` serves the API with.

It is Chalice's own API Gateway stand-in (`chalice.local.LocalGateway`: route matching, the
custom authorizer, its policy check and the context it adds to the event) behind a request
handler that differs from `chalice local`'s in three ways:

- a response leaves in one write, with Nagle's algorithm off: `chalice local` writes headers
  and body separately and unbuffered, so a keep-alive client waits ~40 ms for a delayed ACK on
  every request;
- the gateway's own refusals are in the one error body, as the gateway responses in
  deploy/resources.json make them on AWS, and never echo the Authorization header;
- one short line per request (method, path, status, milliseconds, key prefix) instead of an
  access-log line plus the app's JSON line;
- gzip for a client that sends `Accept-Encoding: gzip`, on bodies of at least the
  `MinimumCompressionSize` the template gives API Gateway, which compresses them on AWS.

`chalice local` itself keeps working for whoever starts it directly.
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import HTTPServer
from socketserver import ThreadingMixIn
from typing import IO, Any

from chalice.local import (
    ChaliceRequestHandler,
    ForbiddenError,
    InvalidAuthorizerError,
    LocalGatewayException,
    NotAuthorizedError,
)

from chalicelib.config import PROJECT_ROOT
from chalicelib.errors import AppError, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from chalicelib.http import error_body
from chalicelib.keys.authorizer import UNAVAILABLE_MESSAGE, bearer_token, parseable_prefix

LOG_FORMATS = ("human", "json")

# Compression is the gateway's job on AWS (the app's bodies stay text, so the 6 MB bound and
# the proxy envelope are the same with and without it); the local server does what the
# template tells API Gateway to do, from the one place that says it.
MINIMUM_COMPRESSION_SIZE: int = json.loads(
    (PROJECT_ROOT / "deploy" / "resources.json").read_text()
)["Resources"]["RestAPI"]["Properties"]["MinimumCompressionSize"]

# The same words as the gateway responses deploy/resources.json gives these refusals on AWS.
UNAUTHORIZED = Unauthorized("a valid API key is required: Authorization: Bearer mdw_...")
FORBIDDEN = Forbidden("this API key's scopes do not include this route")
# What an authorizer failure that is not already in the one error body stands for.
AUTHORIZER_FAILURE = ServiceUnavailable(UNAVAILABLE_MESSAGE)

# chalice.local tells an unknown path from a refused scope only by this error type.
_UNKNOWN_ROUTE_ERROR_TYPE = "UnauthorizedException"


def gateway_refusal(error: LocalGatewayException, path: str) -> AppError:
    """The app-level error a refusal of chalice's stand-in gateway stands for."""
    if isinstance(error, NotAuthorizedError):
        return UNAUTHORIZED
    if isinstance(error, InvalidAuthorizerError):
        return AUTHORIZER_FAILURE
    if isinstance(error, ForbiddenError):
        if error.headers.get("x-amzn-ErrorType") == _UNKNOWN_ROUTE_ERROR_TYPE:
            return NotFound(f"no route matches {path.split('?', 1)[0]}")
        return FORBIDDEN
    return AppError("the local gateway failed; the request was not completed")


def in_one_error_body(error: LocalGatewayException) -> bool:
    """Whether a refusal already carries the one error body (then it is sent as it is)."""
    try:
        body = json.loads(error.body or b"")
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error"} and 400 <= error.CODE < 600


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header admits gzip (by name or `*`, with a weight above 0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        name, _, value = parameters.strip().partition("=")
        try:
            weight = float(value) if name.strip().lower() == "q" else 1.0
        except ValueError:
            weight = 0.0
        if weight > 0:
            return True
    return False


def key_prefix_of(headers: Mapping[str, str]) -> str:
    """What the request line may show of the key: its display prefix, or '-'."""
    header = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    token = bearer_token(header)
    return (parseable_prefix(token) if token else None) or "-"


class RequestLine:
    """Where the per-request lines go (a terminal, or nothing in tests and benchmarks)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, method: str, path: str, status: int, ms: float, key_prefix: str) -> None:
        if self._stream is None:
            return
        line = f"{datetime.now():%H:%M:%S} {method} {path} {status} {ms:.1f} ms {key_prefix}\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class MdwRequestHandler(ChaliceRequestHandler):
    """chalice local's handler, with a buffered writer and TCP_NODELAY: the status line,
    headers and body go out in one write when the request is done."""

    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    request_line: RequestLine = RequestLine(None)

    def _generic_handle(self) -> None:
        started = time.perf_counter()
        headers, body = self._parse_payload()
        try:
            response = self.local_gateway.handle_request(
                method=self.command, path=self.path, headers=headers, body=body
            )
            status = int(response["statusCode"])
            response_headers = {**response["headers"], **response["multiValueHeaders"]}
            response = self._handle_binary(response)
            self._send_http_response(status, response_headers, response["body"])
        except LocalGatewayException as exc:
            if in_one_error_body(exc):
                # The authorizer's own answer (its 503 with Retry-After when it cannot check a
                # key), as the template's gateway response gives it on AWS.
                status = exc.CODE
                refusal_headers = {
                    name: value
                    for name, value in exc.headers.items()
                    if not name.lower().startswith("x-amzn-")
                }
                self._send_http_response(status, refusal_headers, exc.body)
            else:
                refusal = gateway_refusal(exc, self.path)
                status = refusal.status
                self._send_http_response(
                    status, {"Content-Type": "application/json"}, json.dumps(error_body(refusal))
                )
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.request_line.write(self.command, self.path, status, elapsed_ms, key_prefix_of(headers))

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def _send_http_response_with_body(
        self, code: int, headers: dict[str, Any], body: str | bytes
    ) -> None:
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) >= MINIMUM_COMPRESSION_SIZE and accepts_gzip(
            self.headers.get("Accept-Encoding")
        ):
            raw = gzip.compress(raw, compresslevel=6, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        super()._send_http_response_with_body(code, headers, raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """The request line above replaces the standard access log."""


class LocalHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    # A restarted server rebinds at once, even while old connections sit in TIME_WAIT.
    allow_reuse_address = True


def load_app() -> tuple[Any, Any]:
    """The Chalice app and its `local` stage config, loaded as `chalice local` loads them."""
    from chalice.cli.factory import CLIFactory

    factory = CLIFactory(project_dir=str(PROJECT_ROOT))
    config = factory.create_config_obj(chalice_stage_name="local")
    return config.chalice_app, config


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so a busy port costs nothing.
    OSError (EADDRINUSE) when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class LocalServer:
    """The API on an already bound socket, served from a thread until `stop()`."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        app: Any = None,
        config: Any = None,
        request_lines: IO[str] | None = sys.stdout,
    ) -> None:
        from chalice.local import CustomLocalChalice, LocalChalice

        if app is None:
            app, config = load_app()
        # As chalice.local.create_local_server does: current_request becomes per thread.
        if not isinstance(app, LocalChalice):
            CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
            app.__class__ = CustomLocalChalice
        handler_class = type(
            "BoundHandler", (MdwRequestHandler,), {"request_line": RequestLine(request_lines)}
        )

        def handler(*args: Any) -> MdwRequestHandler:
            return handler_class(*args, app_object=app, config=config)

        self.httpd = LocalHTTPServer(
            sock.getsockname()[:2],
            handler,
            bind_and_activate=False,  # type: ignore[arg-type]
        )
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.host, self.port = sock.getsockname()[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


# The request line is the server's own; a plan that queued nothing says nothing, every 20 s.
_SILENT_EVENTS = frozenset({"request", "metric", "backfill.plan.empty"})
_ENVELOPE = frozenset({"time", "level", "event", "function", "_aws"})


def _planned(record: Mapping[str, Any]) -> str:
    return (
        f"planner: {record.get('market')} up to {record.get('target')}: "
        f"{record.get('sent')} queued, {record.get('up_to_date')} up to date"
    )


def _worked(record: Mapping[str, Any]) -> str:
    done = "done" if record.get("event") == "backfill.message.done" else "failed"
    text = f"worker: {record.get('identity')} {done}, {record.get('BarsWritten', 0):,} bars written"
    errors = record.get("errors")
    return text + (f": {'; '.join(errors)}" if errors else "")


# The schedule's everyday events, in a few words; any other event shows all its fields.
_summaries: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "backfill.planned": _planned,
    "backfill.message.done": _worked,
    "backfill.message.failed": _worked,
}


def human_records(stream: IO[str]) -> Callable[[Mapping[str, Any]], None]:
    """A sink for observability records: the request lines are the server's own, so the app's
    JSON request record is dropped; other events become one short line."""
    lock = threading.Lock()

    def write(record: Mapping[str, Any]) -> None:
        event = record.get("event")
        if event in _SILENT_EVENTS or (event == "backfill.planned" and not record.get("sent")):
            return
        summary = _summaries.get(str(event))
        if summary is not None:
            text = summary(record)
        else:
            # Metric values (capitalised names, EMF) repeat fields already on the line.
            fields = " ".join(
                f"{name}={value}"
                for name, value in record.items()
                if name not in _ENVELOPE and not name[:1].isupper()
            )
            text = f"{event} {fields}"
        level = record.get("level", "info")
        marker = "" if level == "info" else f"{str(level).upper()} "
        with lock:
            stream.write(f"{datetime.now():%H:%M:%S} {marker}{text}\n")
            stream.flush()

    return write

"""The HTTP edge: request parsing and validation, JSON responses, and the one error body.

Every route is declared through `chalicelib.routing.route`, which parses with `parse_body` and
`parse_query` and renders errors with `error_response`, so a bad request looks the same
everywhere: `{"error": {"code", "message", "details"?}}`. `request_id_of` and `source_ip_of`
read what API Gateway says about a request, for the middleware and the routes alike.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from chalice import Response
from chalice.app import Request

from chalicelib.errors import AppError, BadRequest, NotAcceptable, NotFound, PayloadTooLarge

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}

_encoder = msgspec.json.Encoder()
# A \u0000 escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# "UnsupportedMediaType" → "unsupported_media_type"
_FRAMEWORK_CODE = re.compile(r"(?<!^)(?=[A-Z])")


def encode_json(value: Any) -> str:
    return _encoder.encode(value).decode()


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str | list[str]] | None = None
) -> Response:
    return Response(
        body=encode_json(body),
        status_code=status,
        headers={**JSON_HEADERS, **(headers or {})},
    )


def error_body(error: AppError) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        payload["details"] = error.details
    return {"error": payload}


def error_response(error: AppError) -> Response:
    headers: dict[str, str | list[str]] = {}
    if error.retry_after is not None:  # 429, and a 503 the client may simply retry
        headers["Retry-After"] = str(error.retry_after)
    return json_response(error_body(error), status=error.status, headers=headers)


def restate_framework_error(response: Response) -> Response:
    """Chalice answers some requests itself, before any view runs (415 for a body sent as
    something other than JSON, 405 for a method the route lacks), with its own
    `{"Code", "Message"}` body. Restate those in the one error body; pass the rest through."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    code = _FRAMEWORK_CODE.sub("_", str(body["Code"])).lower().removesuffix("_error")
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return json_response(
        {"error": {"code": code, "message": str(body["Message"])}},
        status=response.status_code,
        headers=headers,
    )


def answer_in_one_body(
    request: Any, get_response: Callable[[Any], Response], routes: Mapping[str, Any]
) -> Response:
    """The outermost layer of every API request. Whatever happens below it (an event that is
    not API Gateway's REST proxy event, a path no route declares, an exception in a middleware,
    Chalice's own 405 and 415) is answered in the one error body, never with a traceback."""
    if request is None:
        # An HTTP API (v2) or other event sent to the REST handler: Chalice builds no request.
        return error_response(BadRequest("not an API Gateway REST API (v1) proxy event"))
    if request.path not in routes:
        return error_response(NotFound(f"no route matches {request.path}"))
    try:
        response = get_response(request)
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return internal_error_response()
    return restate_framework_error(response)


def internal_error_response() -> Response:
    return error_response(AppError("internal error; the request was not completed"))


# msgspec's words for a value outside a Literal: "Invalid enum value '2d' - at `$.timeframe`".
_INVALID_ENUM = re.compile(r"^Invalid enum value (?P<value>.*) - at `\$(?P<path>[^`]*)`$")
_PATH_STEP = re.compile(r"\.(?P<field>\w+)|\[(?P<index>\d+)\]")


def _validation_error(
    exc: msgspec.ValidationError, model: type[Any], *, prefix: str = ""
) -> BadRequest:
    """A BadRequest for a decoding failure. An invalid choice lists the allowed values (in their
    declared order), so the caller can correct the request without reading the docs; anything
    else keeps msgspec's own words ("Expected `int`, got `str` - at `$.limit`"), which name the
    field."""
    message = str(exc)
    match = _INVALID_ENUM.match(message)
    allowed = _allowed_values(model, match["path"]) if match else None
    if match is None or allowed is None:
        return BadRequest(prefix + (message.replace("$.", "") if prefix else message))
    field = match["path"].removeprefix(".")
    return BadRequest(
        f"{prefix}{field} must be one of {', '.join(map(str, allowed))}; got {match['value']}",
        details={"field": field, "allowed": list(allowed)},
    )


def _allowed_values(model: Any, path: str) -> tuple[Any, ...] | None:
    """The values of the Literal type found at a msgspec error path (`.timeframes[0]`) inside
    `model`, or None if the path does not end at one."""
    current = model
    for step in _PATH_STEP.finditer(path):
        current = _strip(current)
        if step["field"] is not None:
            if not isinstance(current, type) or not issubclass(current, msgspec.Struct):
                return None
            current = get_type_hints(current, include_extras=True).get(step["field"])
        elif get_origin(current) in (list, tuple, set, frozenset):
            current = get_args(current)[0]
        else:
            return None
    current = _strip(current)
    return get_args(current) if get_origin(current) is Literal else None


def _strip(annotation: Any) -> Any:
    """`annotation` without Annotated metadata, `| None` or `| UnsetType`: the one type a
    value must have."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, types.UnionType) or get_origin(annotation) is Union:
        absent = (type(None), msgspec.UnsetType)
        arms = [arm for arm in get_args(annotation) if arm not in absent]
        if len(arms) == 1:
            return _strip(arms[0])
    return annotation


def parse_body(raw: bytes | None, model: type[T]) -> T:
    """Decode a JSON request body into `model`, or raise BadRequest naming the problem."""
    if not raw:
        raise BadRequest("request body is required and must be a JSON object")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if _JSON_NUL.search(raw):
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at the INSERT.
        raise BadRequest("request body strings must not contain NUL (\\u0000)")
    try:
        return msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, model) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON (UTF-8)") from None


def parse_query(params: Mapping[str, str] | None, model: type[T]) -> T:
    """Convert query-string parameters (all strings) into `model`, or raise BadRequest."""
    values = dict(params or {})
    if any("\x00" in value for value in values.values() if isinstance(value, str)):
        raise BadRequest("query parameters must not contain NUL")
    try:
        return msgspec.convert(values, model, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, model, prefix="invalid query parameter: ") from None


def source_ip_of(event: Request) -> str | None:
    """The caller's address as API Gateway saw it, or None when absent or not an address."""
    raw = (event.context.get("identity") or {}).get("sourceIp")
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def request_id_of(event: Request) -> str | None:
    """The request's id for the audit log and JSON log lines."""
    # API Gateway's id (also in its x-amzn-RequestId header); the local server has none, so
    # its invocation id stands in.
    request_id = event.context.get("requestId") or getattr(
        event.lambda_context, "aws_request_id", None
    )
    return str(request_id)[:200] if request_id else None


def parse_id(raw: str, *, name: str = "id") -> int:
    """A positive integer path parameter."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) <= 0:
        raise BadRequest(f"{name} must be a positive integer", details={name: raw[:40]})
    return int(raw)


def negotiate(accept: str | None, offered: Sequence[str]) -> str:
    """The media type of `offered` an `Accept` header prefers (RFC 9110: the most specific
    matching range gives each type its weight; ties go to the earlier offer); the first offer
    when the header is absent or empty; NotAcceptable when it accepts none of them."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if media:
            ranges.append((media.lower(), weight))

    def weight_of(offer: str) -> float:
        kind = offer.split("/")[0]
        for pattern in (offer, f"{kind}/*", "*/*"):  # most specific first
            weights = [weight for media, weight in ranges if media == pattern]
            if weights:
                return max(weights)
        return 0.0

    best = max(offered, key=lambda offer: (weight_of(offer), -offered.index(offer)))
    if weight_of(best) <= 0:
        raise NotAcceptable(
            f"the Accept header ({accept[:100]}) names no media type this route serves; it "
            f"serves {', '.join(offered)}",
            details={"accept": accept[:200], "available": list(offered)},
        )
    return best

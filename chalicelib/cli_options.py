"""CLI options checked by the same models that check the HTTP bodies, with errors that name the
option the operator typed (`--expires-at`), not the body field behind it (`expires_at`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
import msgspec

from chalicelib.errors import AppError, BadRequest

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# msgspec names the failing field as `$.field` or `$.field[2]`.
_FIELD_PATH = re.compile(r"`\$\.([A-Za-z_]+)((?:\[\d+\])*)`")


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def name_options(message: str, options: Mapping[str, str] | None = None) -> str:
    """`Invalid enum value 'x' - at `$.asset_class`` → `... - at --asset-class`; `options`
    maps the fields whose option is named otherwise (a field filled from an argument)."""

    def rename(match: re.Match[str]) -> str:
        field, index = match.group(1), match.group(2)
        name = (options or {}).get(field) or option_name(field)
        return name + (f" (value {int(index[1:-1].split('][')[0]) + 1})" if index else "")

    return _FIELD_PATH.sub(rename, message)


def validated_options(
    data: Mapping[str, Any], model: type[T], *, options: Mapping[str, str] | None = None
) -> T:
    """`data` (option values by body field) as `model`; BadRequest naming the option."""
    try:
        return msgspec.convert(dict(data), model, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(name_options(str(exc), options)) from None


def name_fields_as_options(message: str, options: Mapping[str, str]) -> str:
    """A service's message about a body field (`expires_at must be in the future`) in the
    words of the CLI (`--expires-at must be in the future`)."""
    for field, option in options.items():
        message = re.sub(rf"(?<![\w$.`-]){re.escape(field)}\b", option, message)
    return message


def errors_as_messages(options: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """A command decorator: a domain error is a one-line message and exit status 1, never a
    traceback; `options` puts the body fields it names in the CLI's words."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except AppError as exc:
                raise click.ClickException(
                    name_fields_as_options(exc.message, options or {})
                ) from None

        return wrapper  # type: ignore[return-value]

    return decorate

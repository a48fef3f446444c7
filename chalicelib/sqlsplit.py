"""Split a migration file into statements, so a failure can name the statement that failed and
`CREATE INDEX CONCURRENTLY` can run on its own outside a transaction block."""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """Statements in order, without their terminating semicolons, skipping empty ones.

    Understands what can hide a semicolon in PostgreSQL: quoted strings and identifiers,
    dollar-quoted bodies, line comments and (nested) block comments.
    """
    statements: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            depth = 0
            while i < n:
                if sql.startswith("/*", i):
                    depth += 1
                    i += 2
                elif sql.startswith("*/", i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    i += 1
        elif ch in ("'", '"'):
            i += 1
            while i < n:
                if sql[i] == ch:
                    if i + 1 < n and sql[i + 1] == ch:  # doubled quote is an escaped quote
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "$" and (match := _DOLLAR_TAG.match(sql, i)):
            tag = match.group(0)
            end = sql.find(tag, match.end())
            i = n if end == -1 else end + len(tag)
        elif ch == ";":
            _append(statements, sql[start:i])
            i += 1
            start = i
        else:
            i += 1
    _append(statements, sql[start:])
    return statements


def _append(statements: list[str], chunk: str) -> None:
    if _has_code(chunk):
        statements.append(chunk.strip())


def _has_code(chunk: str) -> bool:
    without_line_comments = re.sub(r"--[^\n]*", "", chunk)
    without_comments = re.sub(r"/\*.*?\*/", "", without_line_comments, flags=re.S)
    return bool(without_comments.strip())

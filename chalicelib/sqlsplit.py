"""Split a migration file into statements, so a failure can name the statement that failed and
`CREATE INDEX CONCURRENTLY` can run on its own outside a transaction block."""

from __future__ import annotations

import re

# A dollar-quote tag: `$$` or `$name$`, where name cannot start with a digit (`$1` is a parameter).
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """Statements in order, stripped, without their terminating semicolons; chunks that hold
    only whitespace and comments are dropped.

    Follows PostgreSQL's lexer wherever a semicolon can hide: standard strings ('it''s'),
    escape strings (E'it\\'s'), quoted identifiers, dollar-quoted bodies, line comments and
    nested block comments. Total: any text splits, in one pass; an unterminated quote or comment
    runs to the end of the text (PostgreSQL then reports the error).
    """
    statements: list[str] = []
    start = 0
    has_code = False
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if sql.startswith("/*", i):
            i = _block_comment_end(sql, i)
            continue
        if ch == ";":
            if has_code:
                statements.append(sql[start:i].strip())
            i += 1
            start = i
            has_code = False
            continue
        if not ch.isspace():
            has_code = True
        if ch == "'":
            i = _quoted_end(sql, i, backslash_escapes=_starts_escape_string(sql, i))
        elif ch == '"':
            i = _quoted_end(sql, i, backslash_escapes=False)
        elif ch == "$" and not _continues_word(sql, i) and (tag := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(tag.group(0), tag.end())
            i = n if end == -1 else end + len(tag.group(0))
        else:
            i += 1
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _continues_word(sql: str, i: int) -> bool:
    """Whether position i continues an identifier or number (`a$b$`: `$` belongs to the name)."""
    return i > 0 and _is_word_char(sql[i - 1])


def _starts_escape_string(sql: str, quote: int) -> bool:
    """Whether the quote at `quote` opens an escape string: `E'…'`, with E a word of its own."""
    return quote > 0 and sql[quote - 1] in "Ee" and not _continues_word(sql, quote - 1)


def _quoted_end(sql: str, i: int, *, backslash_escapes: bool) -> int:
    """The index after the quoted text opening at i; a doubled quote is one escaped quote."""
    quote = sql[i]
    n = len(sql)
    j = i + 1
    while j < n:
        ch = sql[j]
        if backslash_escapes and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _block_comment_end(sql: str, start: int) -> int:
    """The index after the (possibly nested) block comment opening at start."""
    depth = 0
    n = len(sql)
    at = start
    while at < n:
        if sql.startswith("/*", at):
            depth += 1
            at += 2
        elif sql.startswith("*/", at):
            depth -= 1
            at += 2
            if depth == 0:
                return at
        else:
            at += 1
    return n

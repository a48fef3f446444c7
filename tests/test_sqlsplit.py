from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.sqlsplit import split_statements
from tests.conftest import create_database, drop_database


def test_splits_on_semicolons_and_drops_empty_statements():
    assert split_statements("SELECT 1;\n\n;SELECT 2;  ") == ["SELECT 1", "SELECT 2"]


def test_semicolons_inside_quotes_do_not_split():
    sql = "INSERT INTO t VALUES ('a;b', 'it''s;'); SELECT \"odd;name\" FROM t;"

    assert split_statements(sql) == [
        "INSERT INTO t VALUES ('a;b', 'it''s;')",
        'SELECT "odd;name" FROM t',
    ]


def test_dollar_quoted_bodies_stay_whole():
    sql = """
    CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;
    DO $$ BEGIN PERFORM 1; END $$;
    """

    statements = split_statements(sql)

    assert len(statements) == 2
    assert statements[0].endswith("$body$ LANGUAGE plpgsql")
    assert statements[1] == "DO $$ BEGIN PERFORM 1; END $$"


def test_comments_hide_semicolons_and_comment_only_chunks_vanish():
    sql = """
    -- a comment; with a semicolon
    SELECT 1; /* block; /* nested; */ still comment; */ SELECT 2;
    -- trailing comment only
    """

    assert split_statements(sql) == [
        "-- a comment; with a semicolon\n    SELECT 1",
        "/* block; /* nested; */ still comment; */ SELECT 2",
    ]


def test_positional_parameters_are_not_dollar_quotes():
    assert split_statements("PREPARE p AS SELECT $1; SELECT 2") == [
        "PREPARE p AS SELECT $1",
        "SELECT 2",
    ]


def test_escape_strings_hide_backslash_escaped_quotes():
    sql = r"SELECT E'it\'s; here'; SELECT e'\\'; SELECT 'plain\'; SELECT 3"

    assert split_statements(sql) == [
        r"SELECT E'it\'s; here'",
        r"SELECT e'\\'",
        r"SELECT 'plain\'",
        "SELECT 3",
    ]


def test_a_dollar_inside_an_identifier_opens_no_quote():
    assert split_statements("SELECT 1 AS a$b$; SELECT 2 AS c$b$") == [
        "SELECT 1 AS a$b$",
        "SELECT 2 AS c$b$",
    ]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT 1; -- trailing", ["SELECT 1"], id="line-comment-at-end"),
        pytest.param("SELECT 1; /* open", ["SELECT 1"], id="unterminated-block-comment"),
        pytest.param("SELECT 1; SELECT $t$ open", ["SELECT 1", "SELECT $t$ open"], id="open-tag"),
        pytest.param("SELECT 1; SELECT '", ["SELECT 1", "SELECT '"], id="quote-at-end"),
        pytest.param("SELECT 1; SELECT E'\\", ["SELECT 1", "SELECT E'\\"], id="escape-at-end"),
        pytest.param('SELECT "', ['SELECT "'], id="identifier-quote-at-end"),
        pytest.param("$", ["$"], id="lone-dollar"),
        pytest.param("", [], id="empty"),
    ],
)
def test_unterminated_text_runs_to_the_end(sql, expected):
    assert split_statements(sql) == expected


@given(st.text())
def test_any_text_splits_into_stripped_pieces_of_itself(sql):
    statements = split_statements(sql)

    position = 0
    for statement in statements:
        assert statement
        assert statement == statement.strip()
        found = sql.find(statement, position)
        assert found >= position
        position = found + len(statement)


# Property-based, with PostgreSQL as the oracle: random statements whose literals and comments
# are full of semicolons, quotes, backslashes and comment markers, each quoted the way
# PostgreSQL reads it. The server must read the whole script as the statements the splitter
# found, with the same values.
TRICKY = st.text(alphabet=st.sampled_from(list("ab ;'\\$-/*\n\"")), max_size=10)


@st.composite
def literal(draw):
    text = draw(TRICKY)
    style = draw(st.sampled_from(["standard", "escape", "dollar"]))
    if style == "standard":
        return text, "'" + text.replace("'", "''") + "'"
    if style == "escape":
        return text, "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    text = text.replace("$", "")
    tag = draw(st.sampled_from(["", "t", "x_1"]))
    return text, f"${tag}${text}${tag}$"


@st.composite
def comment(draw):
    text = draw(TRICKY).replace("*/", "").replace("/*", "").replace("*", "").replace("/", "")
    kind = draw(st.sampled_from(["none", "line", "block", "nested"]))
    if kind == "line":
        return f" --{text.replace(chr(10), ' ')}\n"
    if kind == "block":
        return f" /*{text}*/ "
    if kind == "nested":
        return f" /* a /*{text}*/ b */ "
    return " "


@st.composite
def statement(draw):
    parts = draw(st.lists(literal(), min_size=1, max_size=3))
    value = "".join(text for text, _ in parts)
    expression = f"{draw(comment())}||{draw(comment())}".join(sql for _, sql in parts)
    alias = '"a;b""c$d$"'
    return value, f"SELECT{draw(comment())}{expression} AS {alias}{draw(comment())}"


@pytest.fixture(scope="module")
def oracle(server_url):
    """A connection to an empty database of its own: the oracle needs no tables."""
    name, url = create_database(server_url, label="oracle_")
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection
    drop_database(server_url, name)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statement(), min_size=1, max_size=4), comment(), st.booleans())
def test_postgresql_reads_the_statements_the_splitter_finds(oracle, statements, tail, final):
    script = ";".join(sql for _, sql in statements) + (";" if final else "") + tail
    expected = [value for value, _ in statements]

    pieces = split_statements(script)
    one_by_one = [oracle.execute(piece).fetchone()[0] for piece in pieces]
    cursor = oracle.execute(script)  # no parameters: PostgreSQL's simple protocol, many results
    whole = [cursor.fetchone()[0]]
    while cursor.nextset():
        whole.append(cursor.fetchone()[0])

    assert one_by_one == expected
    assert whole == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT 'a'", ["SELECT 'a'"], id="closing-quote-last"),
        pytest.param('SELECT "a"', ['SELECT "a"'], id="closing-identifier-quote-last"),
        pytest.param("SELECT 1 -- c\n;SELECT 2", ["SELECT 1 -- c", "SELECT 2"], id="after-comment"),
        # A doubled quote inside an escape string does not end it: the \' after it is escaped.
        pytest.param(
            r"SELECT E'it''s \' ;'; SELECT 2", [r"SELECT E'it''s \' ;'", "SELECT 2"], id="e-doubled"
        ),
        # `time'…'` is a typed literal: a standard string, though the type name ends in e.
        pytest.param(r"SELECT time'a\'; SELECT 2", [r"SELECT time'a\'", "SELECT 2"], id="typed"),
        pytest.param(r"E'it\'s'; SELECT 2", [r"E'it\'s'", "SELECT 2"], id="e-string-first"),
        pytest.param(r"'x\'; SELECT 1 AS e", [r"'x\'", "SELECT 1 AS e"], id="e-at-the-end"),
        pytest.param("/* " + "x" * 300, [], id="long-unterminated-comment"),
        # Past 256 characters an index and the length are no longer the same int object.
        pytest.param("'" + "x" * 300 + "'", ["'" + "x" * 300 + "'"], id="long-string"),
        pytest.param("SELECT 1; " + "-- " + "x" * 300, ["SELECT 1"], id="long-line-comment"),
    ],
)
def test_boundaries_of_quotes_and_comments(sql, expected):
    assert split_statements(sql) == expected


# Each of these splits as PostgreSQL reads it (the oracle checks), and each tells apart a
# near-miss of the splitter that the random scripts rarely reach.
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # A doubled quote late in an escape string: the \' after it is still escaped.
        pytest.param(r"SELECT E'x''\';'", [r"SELECT E'x''\';'"], id="e-doubled-late"),
        # `name'…'` at an even index: the e belongs to the type name, not an E'' prefix.
        pytest.param(
            r"SELECT  name'a\'; SELECT 2", [r"SELECT  name'a\'", "SELECT 2"], id="typed-even"
        ),
        # `/*/` opens a comment and does not close it.
        pytest.param(
            "SELECT 1 /*/ ; SELECT 2 */; SELECT 3",
            ["SELECT 1 /*/ ; SELECT 2 */", "SELECT 3"],
            id="slash-star-slash",
        ),
        pytest.param(
            "SELECT 1 /* c */; SELECT 2",
            ["SELECT 1 /* c */", "SELECT 2"],
            id="semicolon-after-comment",
        ),
        # A quoted identifier has no backslash escapes.
        pytest.param(
            'SELECT 1 AS "a\\"; SELECT 2',
            ['SELECT 1 AS "a\\"', "SELECT 2"],
            id="identifier-backslash",
        ),
    ],
)
def test_postgresql_splits_the_near_misses_alike(oracle, sql, expected):
    pieces = split_statements(sql)
    one_by_one = [oracle.execute(piece).fetchone()[0] for piece in pieces]
    cursor = oracle.execute(sql)
    whole = [cursor.fetchone()[0]]
    while cursor.nextset():
        whole.append(cursor.fetchone()[0])

    assert pieces == expected
    assert whole == one_by_one


def test_a_dollar_at_the_second_character_continues_the_word_before_it():
    # `a$b$` is one identifier: no dollar quote opens at index 1.
    assert split_statements("a$b$; SELECT 1 AS c$b$") == ["a$b$", "SELECT 1 AS c$b$"]

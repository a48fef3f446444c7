from __future__ import annotations

from chalicelib.sqlsplit import split_statements


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

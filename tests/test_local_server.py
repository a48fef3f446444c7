"""The API over real HTTP: under a real `chalice local` process (which still works for whoever
starts it directly), and under the server `make run` uses (devtools/local_server.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from chalicelib.schema import latest_version


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_is_served(chalice_local):
    status, body = get(f"{chalice_local}/health")

    assert status == 200
    assert body == {"status": "ok", "database": "ok", "schema_version": latest_version()}


def test_protected_route_without_a_key_is_401_from_the_local_gateway(chalice_local):
    status, body = get(f"{chalice_local}/api/v1/symbols")

    assert status == 401
    # chalice local's stand-in gateway refuses before the app runs, in its own words; on AWS
    # the gateway responses in deploy/resources.json give this refusal the one error body.
    assert body == {"message": "Unauthorized"}


# --- The server `make run` uses: devtools/local_server.py, in this process --------------------

import errno  # noqa: E402
import gzip  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402

from chalicelib import db  # noqa: E402
from chalicelib.config import PROJECT_ROOT  # noqa: E402
from chalicelib.keys.authorizer import (  # noqa: E402
    UNAVAILABLE_MESSAGE,
    UNAVAILABLE_RETRY_AFTER_SECONDS,
)
from devtools.local_server import (  # noqa: E402
    MINIMUM_COMPRESSION_SIZE,
    LocalServer,
    accepts_gzip,
    bind,
)
from tests.factories import make_admin_key, make_key, make_symbol  # noqa: E402


@pytest.fixture
def local_server(committed_db):
    """`make run`'s server on a free port against the session database; its request lines are
    captured."""
    lines = io.StringIO()
    server = LocalServer(bind("127.0.0.1", 0), request_lines=lines).start()
    server.lines = lines
    try:
        yield server
    finally:
        server.stop()


def keys(database_url):
    with db.connect(database_url) as conn, conn.transaction():
        return make_key(conn).raw_key, make_admin_key(conn).raw_key


def call(server, method, path, *, key=None, connection=None):
    """One request; on a new connection (closed after) unless `connection` is given."""
    own = connection is None
    connection = connection or http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        if own:
            connection.close()


def test_the_gateway_refusals_are_in_the_one_error_body(local_server, committed_db):
    read_key, admin_key = keys(committed_db)

    assert call(local_server, "GET", "/api/v1/symbols") == (
        401,
        "application/json",
        {
            "error": {
                "code": "unauthorized",
                "message": "a valid API key is required: Authorization: Bearer mdw_...",
            }
        },
    )
    wrong_key = "mdw_" + "A" * 41 + "000000"
    assert call(local_server, "GET", "/api/v1/symbols", key=wrong_key)[:2] == (
        401,
        "application/json",
    )
    assert call(local_server, "GET", "/api/v1/admin/api-keys", key=read_key) == (
        403,
        "application/json",
        {
            "error": {
                "code": "forbidden",
                "message": "this API key's scopes do not include this route",
            }
        },
    )
    status, _, body = call(local_server, "GET", "/api/v1/nothing-here", key=admin_key)
    assert (status, body) == (
        404,
        {"error": {"code": "not_found", "message": "no route matches /api/v1/nothing-here"}},
    )
    status, _, body = call(local_server, "DELETE", "/api/v1/symbols", key=admin_key)
    assert status == 405
    assert body["error"]["code"] == "method_not_allowed"
    # chalice local echoes the Authorization header of a request for an unknown path.
    assert admin_key not in local_server.lines.getvalue()
    assert admin_key[:12] in local_server.lines.getvalue()


def test_a_key_is_never_echoed(local_server, committed_db):
    _, admin_key = keys(committed_db)

    for path in ("/nope", "/api/v1/nope?x=1", "/api/v1/admin/symbols/%00"):
        connection = http.client.HTTPConnection(local_server.host, local_server.port, timeout=10)
        connection.request("GET", path, headers={"Authorization": f"Bearer {admin_key}"})
        raw = connection.getresponse().read()
        connection.close()
        assert admin_key.encode() not in raw
        assert admin_key[4:].encode() not in raw


def test_an_unreachable_database_makes_the_authorizer_answer_503(
    local_server, committed_db, set_env
):
    _, admin_key = keys(committed_db)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    set_env(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port}/none",
        DATABASE_CONNECT_TIMEOUT_SECONDS="1",
    )
    # set_env resets the container: the key must be looked up, not remembered.

    connection = http.client.HTTPConnection(local_server.host, local_server.port, timeout=30)
    connection.request("GET", "/api/v1/symbols", headers={"Authorization": f"Bearer {admin_key}"})
    response = connection.getresponse()
    raw = response.read()
    connection.close()

    assert (response.status, response.getheader("Content-Type")) == (503, "application/json")
    assert response.getheader("Retry-After") == str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    assert json.loads(raw) == {
        "error": {"code": "service_unavailable", "message": UNAVAILABLE_MESSAGE}
    }
    assert response.getheader("x-amzn-ErrorType") is None
    assert admin_key.encode() not in raw


def test_one_line_per_request_and_keep_alive(local_server, committed_db):
    read_key, _ = keys(committed_db)
    with db.connect(committed_db) as conn, conn.transaction():
        make_symbol(conn, symbol="AAPL")
    connection = http.client.HTTPConnection(local_server.host, local_server.port, timeout=10)

    try:
        answers = [
            call(local_server, "GET", "/api/v1/symbols", key=read_key, connection=connection)[0]
            for _ in range(3)
        ]

    finally:
        connection.close()

    assert answers == [200, 200, 200]
    lines = local_server.lines.getvalue().splitlines()
    assert len(lines) == 3
    _, method, path, status, ms, unit, prefix = lines[0].split(" ")
    assert (method, path, status, unit, prefix) == (
        "GET",
        "/api/v1/symbols",
        "200",
        "ms",
        read_key[:12],
    )
    assert float(ms) > 0


def test_a_busy_port_is_refused_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="Address already in use") as refused:
            bind("127.0.0.1", port)

    assert refused.value.errno == errno.EADDRINUSE


def raw_get(server, path, headers):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_bodies_are_gzipped_for_clients_that_accept_it_as_api_gateway_does(
    local_server, committed_db
):
    plain_response, plain = raw_get(local_server, "/openapi.json", {})
    zipped_response, zipped = raw_get(
        local_server, "/openapi.json", {"Accept-Encoding": "br;q=1.0, gzip;q=0.8"}
    )
    refused_response, _ = raw_get(local_server, "/openapi.json", {"Accept-Encoding": "gzip;q=0"})
    small_response, small = raw_get(local_server, "/health", {"Accept-Encoding": "gzip"})

    assert plain_response.getheader("Content-Encoding") is None
    assert zipped_response.getheader("Content-Encoding") == "gzip"
    assert zipped_response.getheader("Vary") == "Accept-Encoding"
    assert int(zipped_response.getheader("Content-Length")) == len(zipped) < len(plain) / 3
    assert gzip.decompress(zipped) == plain
    assert refused_response.getheader("Content-Encoding") is None
    assert len(small) < MINIMUM_COMPRESSION_SIZE
    assert small_response.getheader("Content-Encoding") is None


def test_the_local_threshold_is_the_templates():
    template = json.loads((PROJECT_ROOT / "deploy" / "resources.json").read_text())

    assert MINIMUM_COMPRESSION_SIZE == 1024
    assert template["Resources"]["RestAPI"]["Properties"]["MinimumCompressionSize"] == 1024


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=zero", False),
        ("identity", False),
        ("", False),
        (None, False),
    ],
)
def test_accepts_gzip(header, expected):
    assert accepts_gzip(header) is expected

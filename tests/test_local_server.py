"""The API under a real `chalice local` process, as `make run` serves it."""

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

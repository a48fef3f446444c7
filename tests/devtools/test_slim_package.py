"""The package is rewritten without the files no function uses, and nothing else changes."""

from __future__ import annotations

import zipfile
from pathlib import Path

from devtools.slim_package import slim


def test_unused_files_are_left_out_and_the_rest_kept_as_written(tmp_path: Path) -> None:
    archive = tmp_path / "deployment.zip"
    kept = {
        "app.py": b"app",
        "chalicelib/keys/authorizer.py": b"authorizer",
        "chalicelib/client.py": b"not the command line",
        "holidays/financial/ny_stock_exchange.py": b"nyse",
        "migrations/0001_create_core_tables.sql": b"CREATE TABLE",
    }
    unused = {
        "chalicelib/cli.py": b"cli",
        "chalicelib/keys/cli.py": b"keys cli",
        "holidays/locale/de/LC_MESSAGES/DE.mo": b"mo",
    }
    with zipfile.ZipFile(archive, "w") as package:
        for name, data in {**kept, **unused}.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 2, 3, 4, 6))
            info.external_attr = 0o100755 << 16
            package.writestr(info, data)

    dropped, before, after = slim(str(archive))

    assert dropped == len(unused)
    assert after < before
    with zipfile.ZipFile(archive) as package:
        assert {info.filename: package.read(info) for info in package.infolist()} == kept
        for info in package.infolist():
            assert info.date_time == (2026, 1, 2, 3, 4, 6)
            assert info.external_attr == 0o100755 << 16

"""Drop from `deployment.zip` what no Lambda function uses, after `chalice package` wrote it.

    python devtools/slim_package.py build/package/deployment.zip

Chalice ships all of `chalicelib/` and every dependency's files. Left out here:
- the `mdw` command line (`chalicelib/cli.py`, `chalicelib/*/cli.py`): operators run it from a
  checkout, never in Lambda;
- `holidays/locale/`: translations of holiday names into some 90 languages (775 files); the
  NYSE calendar reads dates, never names.
Standard library only: it runs in the packaging virtualenv.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
import zipfile

UNUSED = ("chalicelib/cli.py", "chalicelib/*/cli.py", "holidays/locale/*")


def is_unused(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in UNUSED)


def slim(path: str) -> tuple[int, int, int]:
    """Rewrite the archive without unused files; (files dropped, bytes before, bytes after)."""
    before = os.path.getsize(path)
    dropped = 0
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".zip", delete=False) as handle:
        temporary = handle.name
    try:
        with (
            zipfile.ZipFile(path) as source,
            zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as target,
        ):
            for info in source.infolist():
                if is_unused(info.filename):
                    dropped += 1
                    continue
                # Same name, timestamps and permissions (external_attr) as Chalice wrote them.
                target.writestr(info, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return dropped, before, os.path.getsize(path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    dropped, before, after = slim(argv[0])
    sizes = f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB"
    print(f"{argv[0]}: {dropped} unused files left out, {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

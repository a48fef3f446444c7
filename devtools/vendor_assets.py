"""Re-vendor the pages' front-end assets from npm at the pinned versions below:
`python -m devtools.vendor_assets`. Each package is fetched with `npm pack` (npm checks the
tarball against the registry's integrity hash), and only the listed files and the licence are
copied into chalicelib/pages/static/vendor/, with a VERSIONS.md naming package, version,
licence and each file's SHA-256. Nothing is built: the files are the packages' own dist files.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chalicelib.config import PROJECT_ROOT

VENDOR_DIR = PROJECT_ROOT / "chalicelib" / "pages" / "static" / "vendor"
VERSIONS_FILE = VENDOR_DIR / "VERSIONS.md"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    # path inside the package → file name under vendor/
    files: dict[str, str]


PACKAGES = (
    Package(
        "swagger-ui-dist",
        "5.35.0",
        {
            "swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "swagger-ui.css": "swagger-ui.css",
            "LICENSE": "swagger-ui-dist.LICENSE.txt",
            "NOTICE": "swagger-ui-dist.NOTICE.txt",
            "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
        },
    ),
    Package(
        "lightweight-charts",
        "5.2.1",
        {
            "dist/lightweight-charts.standalone.production.js": "lightweight-charts.js",
            "LICENSE": "lightweight-charts.LICENSE.txt",
            # Its licence section asks for the attribution the symbol page shows under the chart.
            "README.md": "lightweight-charts.README.md",
        },
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(package: Package, workdir: Path) -> tuple[str, list[str]]:
    """Copy the package's files into VENDOR_DIR; its licence name and the files written."""
    spec = f"{package.name}@{package.version}"
    packed = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    tarball = workdir / json.loads(packed.stdout)[0]["filename"]
    written = []
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
        for inner, target in package.files.items():
            member = archive.extractfile(f"package/{inner}")
            assert member is not None, f"{spec} has no {inner}"
            (VENDOR_DIR / target).write_bytes(member.read())
            written.append(target)
    return str(manifest.get("license", "see its LICENSE")), written


def main() -> None:
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Vendored front-end assets",
        "",
        "Written by `python -m devtools.vendor_assets` from the pinned list in that script;",
        "do not edit. Each file is the package's own published file, unchanged.",
        "",
        "| package | version | licence | file | sha256 |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for package in PACKAGES:
            licence, written = fetch(package, Path(tmp))
            for target in written:
                digest = sha256(VENDOR_DIR / target)
                lines.append(
                    f"| {package.name} | {package.version} | {licence} | {target} | {digest} |"
                )
    VERSIONS_FILE.write_text("\n".join(lines) + "\n")
    print(f"wrote {VERSIONS_FILE.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()

"""Apply overlay patches inside an image: replace files of an installed package, safely.

Each overlay names the upstream file it was derived from by sha256. An installed file with any
other content is refused (exit 1): overwriting it would silently drop whatever upstream changed.
"""

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path


def package_root(target: str) -> Path:
    top = target.split("/", 1)[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"apply-overlays: package '{top}' is not installed in this image")
    return Path(list(spec.submodule_search_locations)[0]).parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(manifest_path: str) -> None:
    manifest = json.loads(Path(manifest_path).read_text())
    here = Path(manifest_path).parent
    for overlay in manifest:
        installed = package_root(overlay["target"]) / overlay["target"]
        if not installed.is_file():
            sys.exit(f"apply-overlays: {overlay['id']}: {installed} does not exist in this image")
        found = sha256(installed)
        if found == overlay["sha256"]:
            print(f"apply-overlays: {overlay['id']}: {installed} already carries the overlay")
            continue
        if found != overlay["derived_from_sha256"]:
            sys.exit(f"apply-overlays: {overlay['id']}: refusing to overwrite {installed}: its sha256 is "
                     f"{found}, the overlay was derived from {overlay['derived_from_sha256']}")
        shutil.copyfile(here / overlay["file"], installed)
        print(f"apply-overlays: {overlay['id']}: replaced {installed}")


if __name__ == "__main__":
    main(sys.argv[1])

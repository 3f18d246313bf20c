"""`builder base create`: a local base image for machines without a public registry.

debootstrap builds a minimal Debian root file system with Python, and `docker import` turns it
into an image under the name the matrix uses. Side effects: debootstrap, docker.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from builder.errors import InputError, StepFailed

DEFAULT_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")


def create_base(tag: str, suite: str = "bookworm", mirror: str = "http://deb.debian.org/debian",
                packages: tuple[str, ...] = DEFAULT_PACKAGES, docker: str = "docker", log=print) -> float:
    """Build and import the base image; returns the seconds it took."""
    if shutil.which("debootstrap") is None:
        raise InputError("debootstrap is not installed: apt-get install -y debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llm-factory-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap {suite} ({', '.join(packages)}) from {mirror}")
        done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
                               str(root), mirror], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            last = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise StepFailed(f"debootstrap failed (exit {done.returncode}):\n{last}")
        # Slim and neutral: no apt lists or .debs, and Docker supplies resolv.conf at run time.
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
            for path in root.glob(pattern):
                if path.is_file():
                    path.unlink()
        (root / "etc" / "resolv.conf").write_text("")
        (root / "etc" / "apt" / "sources.list").write_text(f"deb {mirror} {suite} main\n")
        log(f"docker import -> {tag}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run([docker, "import",
                                       "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                       "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["/bin/bash"]',
                                       "--message", f"debootstrap {suite} minbase + {' '.join(packages)}",
                                       "-", tag], stdin=tar.stdout, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise StepFailed("docker import took over 15 minutes") from None
        finally:
            if tar.poll() is None:
                tar.kill()
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise StepFailed(f"docker import failed: {imported.stderr.strip()[-300:]}")
    return time.monotonic() - started

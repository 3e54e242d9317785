"""Build (once) and cache the Debian root filesystem the lab hosts boot from.

The root is made by debootstrap from the Debian mirror this machine's apt already uses, with the
packages every lab host needs. It is cached under ``/var/cache/svrchain-lab`` keyed by a hash of
the recipe, so a second ``lab up`` reuses it; each host only ever sees it as the read-only lower
layer of its own overlayfs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
CACHE = Path("/var/cache/svrchain-lab")
PACKAGES = (
    "openssh-server", "openssh-client", "postgresql", "apache2", "libapache2-mod-php", "php-pgsql",
    "rsyslog", "tini", "procps", "iproute2", "curl", "sudo", "sysv-rc", "netcat-openbsd",
    "systemd", "systemd-sysv", "dbus", "less",
)
RECIPE_VERSION = "1"


def mirror() -> str:
    """Return the Debian mirror URI this machine's apt is configured with."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.exists():
            continue
        text = path.read_text()
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+\S+", text, re.M
        )
        if m:
            return m.group(1)
    raise SystemExit("lab: no Debian mirror found in /etc/apt/sources.list(.d); cannot debootstrap")


def recipe_key() -> str:
    """Hash of everything that shapes the root: a change of recipe builds a new root."""
    blob = "\n".join([SUITE, RECIPE_VERSION, *PACKAGES]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def rootfs_path() -> Path:
    """Where the cached root for the current recipe lives."""
    return CACHE / f"rootfs-{SUITE}-{recipe_key()}"


def ensure_rootfs(log: bool = True) -> Path:
    """Return the cached root, building it with debootstrap first if it is missing."""
    root = rootfs_path()
    if (root / ".svrchain-complete").exists():
        return root
    if shutil.which("debootstrap") is None:
        raise SystemExit("lab: debootstrap is not installed; run `make install` first")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"lab: building the host root filesystem in {root} (once, cached)", flush=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp),
         mirror()],
        check=True, stdout=subprocess.DEVNULL,
    )
    _prepare(tmp)
    (tmp / ".svrchain-complete").write_text(recipe_key() + "\n")
    tmp.rename(root)
    return root


def _prepare(root: Path) -> None:
    """Make the fresh root neutral: no host keys, no pre-made machine identity, apt cache emptied."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/machine-id").write_text("")

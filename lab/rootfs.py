"""Build (once) and cache the Debian root filesystem the lab hosts boot from.

The root is made by debootstrap from the Debian mirror this machine's apt already uses, with the
packages every lab host needs, and chkconfig 1.33 built inside it from the source vendored in this
repository (``lab/vendor``: its origin, checksum and GPL-2.0 licence are there; Debian has no
chkconfig package). The binary waits at
``CHKCONFIG_BIN``, outside the PATH: only ``INIT=chkconfig`` hosts install it. The root is cached
under ``/var/cache/svrchain-lab`` keyed by a hash of the recipe, so a second ``lab up`` reuses it;
each host only ever sees it as the read-only lower layer of its own overlayfs.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab import LabError

SUITE = "bookworm"
CACHE = Path("/var/cache/svrchain-lab")
PACKAGES = (
    "openssh-server", "openssh-client", "postgresql", "apache2", "libapache2-mod-php", "php-pgsql",
    "rsyslog", "tini", "procps", "iproute2", "curl", "sudo", "sysv-rc", "netcat-openbsd",
    "systemd", "systemd-sysv", "dbus", "less",
)
# What building chkconfig needs (the vendor README's list; libc6-dev is only a recommendation of gcc's).
BUILD_PACKAGES = ("gcc", "make", "libc6-dev", "libpopt-dev", "libselinux1-dev", "libsepol-dev")
RECIPE_VERSION = "2"
VENDOR = Path(__file__).resolve().parent / "vendor"
CHKCONFIG_SOURCE = VENDOR / "chkconfig-1.33.tar.gz"
CHKCONFIG_SHA256 = "e37743d48be453b1059c401534c588a9bb0d69d59178bcc484ee4b9f7e29461c"
CHKCONFIG_BIN = "/usr/lib/svrchain-lab/chkconfig"  # inside the root


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
    raise LabError("lab: no Debian mirror found in /etc/apt/sources.list(.d); cannot debootstrap")


def recipe_key() -> str:
    """Hash of everything that shapes the root: a change of recipe builds a new root."""
    blob = "\n".join([SUITE, RECIPE_VERSION, *PACKAGES, *BUILD_PACKAGES, CHKCONFIG_SHA256, CHKCONFIG_BIN]).encode()
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
        raise LabError("lab: debootstrap is not installed; run `make lab-deps` first (as root)")
    CACHE.mkdir(parents=True, exist_ok=True)
    # Labs in other slots (make test brings up two at once) wait for this one build, then use it.
    with (CACHE / f".build-{recipe_key()}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".svrchain-complete").exists():
            return root
        return _build_rootfs(root, log)


def _build_rootfs(root: Path, log: bool) -> Path:
    """Build the cached root with debootstrap and chkconfig (under the build lock)."""
    source = chkconfig_source()
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if log:
        print(f"lab: building the host root filesystem in {root} (once, cached; a few minutes, "
              f"a progress line every {PROGRESS_EVERY:.0f} s)", flush=True)
    debootstrap = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES + BUILD_PACKAGES)}", SUITE,
                   str(tmp), mirror()]
    run_with_progress(debootstrap, CACHE / f"debootstrap-{recipe_key()}.log",
                      (lambda line: print(line, flush=True)) if log else (lambda line: None))
    _prepare(tmp)
    build_chkconfig(tmp, source)
    (tmp / ".svrchain-complete").write_text(recipe_key() + "\n")
    tmp.rename(root)
    return root


PROGRESS_EVERY = 5.0  # seconds between two progress lines of a long build step


def run_with_progress(cmd: list[str], log: Path, say: Callable[[str], None], every: float = PROGRESS_EVERY) -> None:
    """Run ``cmd`` with its output in ``log``; every ``every`` seconds ``say`` one line: the time so far
    and the step it is at (its last ``I:`` line). A failure is one :class:`LabError` line naming the log."""
    last = {"line": "starting"}
    start = time.monotonic()
    with log.open("w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                errors="replace") as proc:
        reader = threading.Thread(target=_follow, args=(proc, out, last), daemon=True)
        reader.start()
        while True:
            try:
                proc.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                say(f"lab: {cmd[0]}: {time.monotonic() - start:4.0f} s, {last['line']}")
        reader.join()
    if proc.returncode != 0:
        raise LabError(f"lab: {cmd[0]} failed (exit {proc.returncode}) at: {last['line']}; its output is in {log}")
    say(f"lab: {cmd[0]}: done in {time.monotonic() - start:.0f} s")


def _follow(proc: subprocess.Popen, out, last: dict[str, str]) -> None:
    """Copy ``proc``'s output to ``out``, keeping its last progress line (debootstrap's ``I:``/``E:``/``W:``
    lines) in ``last``."""
    for line in proc.stdout:
        out.write(line)
        text = line.strip()
        if text[:2] in ("I:", "E:", "W:"):
            last["line"] = text[2:].strip()[:100]


def _prepare(root: Path) -> None:
    """Make the fresh root neutral: no host keys, no pre-made machine identity, apt cache emptied."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/machine-id").write_text("")


def chkconfig_source() -> Path:
    """The vendored chkconfig 1.33 source, checked against its pinned checksum (no network fetch)."""
    if not CHKCONFIG_SOURCE.is_file():
        raise LabError(f"lab: {CHKCONFIG_SOURCE} is missing from the checkout; "
                       "restore it with `git checkout -- lab/vendor`")
    digest = hashlib.sha256(CHKCONFIG_SOURCE.read_bytes()).hexdigest()
    if digest != CHKCONFIG_SHA256:
        raise LabError(f"lab: {CHKCONFIG_SOURCE} has sha256 {digest}, want {CHKCONFIG_SHA256}")
    return CHKCONFIG_SOURCE


def build_chkconfig(root: Path, source: Path) -> None:
    """Build chkconfig inside ``root`` (its own gcc and libraries: the binary fits the hosts' glibc)
    and leave it at CHKCONFIG_BIN; the build tree is removed."""
    src = root / "usr/src"
    subprocess.run(["tar", "-xzf", str(source), "-C", str(src), "--no-same-owner"], check=True)
    tree = "/usr/src/" + source.name.removesuffix(".tar.gz")
    log = CACHE / f"chkconfig-build-{recipe_key()}.log"
    with log.open("w") as out:
        built = subprocess.run(["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                "make", "-C", tree, "chkconfig"], stdout=out, stderr=subprocess.STDOUT)
    if built.returncode != 0 or not (root / tree.lstrip("/") / "chkconfig").exists():
        raise LabError(f"lab: building chkconfig from {source.name} failed (see {log}); the lab root needs "
                         f"{' '.join(BUILD_PACKAGES)} (lab/rootfs.py BUILD_PACKAGES)")
    dest = root / CHKCONFIG_BIN.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / tree.lstrip("/") / "chkconfig", dest)
    shutil.rmtree(root / tree.lstrip("/"))

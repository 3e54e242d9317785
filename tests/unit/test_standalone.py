"""A clone stands alone: what the lab builds from this repository's own files is built from a clone made
in an empty temporary directory, with nothing beside it.

The clone (``git clone`` of this checkout: only committed files) sits alone in its parent directory;
its own ``lab/rootfs.py`` checks its vendored chkconfig source and builds chkconfig into an overlay of
the cached lab root (the cache is built first if missing, by the lab's own code). A path outside the
clone that the build read (a ``shared/`` folder beside the repository, this checkout) is not there:
the build fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import rootfs

REPO = Path(__file__).resolve().parents[2]
BESIDE = b"../" b"shared"  # the folder beside the repository that only this project's CI has

# Run by the clone's own Python code, with the clone as its only source: its lab.rootfs, its vendor dir.
BUILD = r"""
import subprocess, sys
from pathlib import Path
clone, lower, scratch = map(Path, sys.argv[1:4])
sys.path[:0] = [str(clone)]
from lab import rootfs
assert Path(rootfs.__file__).resolve().is_relative_to(clone), rootfs.__file__
rootfs.CACHE = scratch  # the build log goes here, not to the shared cache
merged, upper, work = scratch / "merged", scratch / "upper", scratch / "work"
for d in (merged, upper, work):
    d.mkdir()
subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
(merged / rootfs.CHKCONFIG_BIN.lstrip("/")).unlink()  # the cached one: this build must make its own
source = rootfs.chkconfig_source()
print("source", source)
rootfs.build_chkconfig(merged, source)
out = subprocess.run(["chroot", str(merged), rootfs.CHKCONFIG_BIN, "--version"], capture_output=True, text=True)
print("built", (upper / rootfs.CHKCONFIG_BIN.lstrip("/")).is_file(), out.stdout.strip() or out.stderr.strip())
"""


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts and chroot need root")
def test_a_clone_with_nothing_beside_it_builds_the_lab_root_and_chkconfig(tmp_path):
    alone, scratch = tmp_path / "alone", tmp_path / "scratch"
    alone.mkdir()
    scratch.mkdir()
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(alone / "svrchain")], check=True,
                   timeout=120)
    clone = alone / "svrchain"
    assert sorted(p.name for p in alone.iterdir()) == ["svrchain"]  # nothing beside it: no shared/
    assert (clone / "lab/vendor/chkconfig-1.33.tar.gz").is_file()
    lower = rootfs.ensure_rootfs()  # the lab's cached root (built once, from the vendored source, if missing)
    # A mount namespace of its own: the overlay goes away with the process, whatever happens.
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", BUILD, str(clone),
                        str(lower), str(scratch)], cwd=clone, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"source {clone}/lab/vendor/chkconfig-1.33.tar.gz" in r.stdout
    assert "built True" in r.stdout and "1.33" in r.stdout, r.stdout


def test_no_file_of_the_repository_refers_to_a_folder_beside_it():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    beside = [name for name in files.stdout.split("\0") if name and not name.startswith("lab/vendor/")
              and BESIDE in (REPO / name).read_bytes()]
    assert beside == []

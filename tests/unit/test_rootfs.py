"""The lab root's chkconfig build: the vendored source is checked, and a failed build is one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import LabError, rootfs


def test_the_recipe_key_covers_the_chkconfig_build(monkeypatch):
    key = rootfs.recipe_key()
    monkeypatch.setattr(rootfs, "BUILD_PACKAGES", (*rootfs.BUILD_PACKAGES, "libfoo-dev"))
    assert rootfs.recipe_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(rootfs, "CHKCONFIG_SHA256", "0" * 64)
    assert rootfs.recipe_key() != key


def test_a_missing_or_different_source_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(rootfs, "CHKCONFIG_SOURCE", tmp_path / "chkconfig-1.33.tar.gz")
    with pytest.raises(LabError, match=r"chkconfig-1.33.tar.gz is missing from the checkout; restore it with `git"):
        rootfs.chkconfig_source()
    (tmp_path / "chkconfig-1.33.tar.gz").write_bytes(b"not the release")
    with pytest.raises(LabError, match=r"has sha256 [0-9a-f]{64}, want e37743d4"):
        rootfs.chkconfig_source()


def test_the_vendored_source_is_inside_the_repository():
    repo = Path(__file__).resolve().parents[2]
    assert repo / "lab/vendor/chkconfig-1.33.tar.gz" == rootfs.CHKCONFIG_SOURCE
    assert rootfs.chkconfig_source() == rootfs.CHKCONFIG_SOURCE  # present and at its pinned checksum


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_a_root_without_the_build_tools_fails_in_one_line_naming_them(monkeypatch, tmp_path):
    monkeypatch.setattr(rootfs, "CACHE", tmp_path)
    root = tmp_path / "root"
    (root / "usr/src").mkdir(parents=True)  # no compiler, no make, not even env
    with pytest.raises(LabError) as exc:
        rootfs.build_chkconfig(root, rootfs.CHKCONFIG_SOURCE)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("lab: building chkconfig from chkconfig-1.33.tar.gz failed (see ")
    assert "gcc make libc6-dev libpopt-dev libselinux1-dev libsepol-dev" in msg

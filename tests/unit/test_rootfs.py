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


def test_a_long_build_step_says_where_it_is_every_few_seconds(tmp_path):
    """debootstrap's minutes are not silent: a line every ``every`` seconds with the time and the step."""
    script = "echo 'I: Retrieving Release'; sleep 0.15; echo 'noise'; echo 'I: Unpacking apache2...'; sleep 0.15"
    said: list[str] = []
    rootfs.run_with_progress(["sh", "-c", script], tmp_path / "build.log", said.append, every=0.05)
    assert len(said) >= 3 and said[-1].startswith("lab: sh: done in ")
    assert any(line.endswith(", Retrieving Release") for line in said)
    assert said[-2].endswith(", Unpacking apache2...") and "lab: sh: " in said[0]
    assert "noise" in (tmp_path / "build.log").read_text()  # the whole output is kept in the log


def test_a_failed_build_step_is_one_line_naming_its_log(tmp_path):
    with pytest.raises(LabError) as exc:
        rootfs.run_with_progress(["sh", "-c", "echo 'I: Resolving'; echo 'E: Could not download apache2'; exit 1"],
                                 tmp_path / "build.log", lambda line: None, every=0.2)
    assert str(exc.value) == (f"lab: sh failed (exit 1) at: Could not download apache2; its output is in "
                              f"{tmp_path / 'build.log'}")

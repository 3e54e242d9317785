"""File plans: what differs, and the diff a dry run shows."""

from svrchain.core.plan import FileSpec, FileState, file_change

SPEC = FileSpec("/etc/x", b"a\nb\n", 0o644)


def test_missing_file_is_created():
    change = file_change(SPEC, FileState("/etc/x", False))
    assert change.reasons == ("create",)
    assert "+++ /etc/x" in change.diff() and "--- /dev/null" in change.diff()


def test_same_file_is_no_change():
    assert file_change(SPEC, FileState("/etc/x", True, b"a\nb\n", 0o644, "root", "root")) is None


def test_content_mode_and_owner_are_reported():
    change = file_change(SPEC, FileState("/etc/x", True, b"a\n", 0o600, "web", "web"))
    assert change.reasons == ("content", "mode 600->644", "owner web:web->root:root")
    assert "+b" in change.diff()


def test_mode_only_change_has_no_content_diff():
    change = file_change(SPEC, FileState("/etc/x", True, b"a\nb\n", 0o600, "root", "root"))
    assert change.diff() == ""

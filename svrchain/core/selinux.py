"""SELinux on RHEL and Oracle Linux: the files svrchain writes get their default contexts, and verify
reports one that differs (pure: the shell snippets and the reading of their output).

Where SELinux is enabled (``selinuxenabled``), every atomic write ends with ``restorecon`` on the file
(and on the directory it made), run as the file's account where it is in an account's home; sshd
reads ``~/.ssh/authorized_keys`` only with the ``ssh_home_t`` type, and init runs the trigger only
as an ``initrc_exec_t`` / ``bin_t`` file. verify asks ``matchpathcon -V`` about each file svrchain
wrote. Where SELinux is off or absent, both do nothing.
"""

from __future__ import annotations

from svrchain.core import tell

# Sourced by the atomic write (remote.files.WRITE_SCRIPT) after its rename: $f the file, $made the
# directory it created ('' when none); run() runs as the file's account. Exit 7 when restorecon fails.
RESTORECON = r"""
if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    if ! out=$(run restorecon -- ${made:+"$made"} "$f" 2>&1); then
        echo "$f is written, but restorecon failed ($out): its SELinux context may keep sshd or init from" \
            "using it; run restorecon -v $f" >&2
        exit 7
    fi
fi
"""

# verify: for each path that exists, "ok PATH" or "wrong PATH: <matchpathcon's words>"; one line
# "disabled" when SELinux is off or absent.
CHECK = r"""
if ! command -v selinuxenabled >/dev/null 2>&1 || ! selinuxenabled; then echo disabled; exit 0; fi
for p; do
    [ -e "$p" ] || continue
    if out=$(matchpathcon -V -- "$p" 2>&1) && [ "${out% verified.}" != "$out" ]; then
        echo "ok $p"
    else
        echo "wrong $p: $(printf '%s' "$out" | tr '\n' ' ')"
    fi
done
"""


def wrong_contexts(output: str) -> list[str] | None:
    """What :data:`CHECK` printed, as the files whose context differs ("PATH: why"); None when SELinux
    is off."""
    lines = output.splitlines()
    if lines[:1] == ["disabled"]:
        return None
    return [ln.removeprefix("wrong ") for ln in lines if ln.startswith("wrong ")]


def check_detail(paths: list[str], wrong: list[str]) -> tuple[bool, str]:
    """verify's SELinux check: (ok, detail)."""
    if not wrong:
        return True, f"the default context on all {len(paths)} file(s) svrchain wrote"
    fix = f"run restorecon -v on it, or {tell.command('bootstrap')} rewrites it with restorecon"
    return False, "; ".join(wrong) + f" ({fix})"

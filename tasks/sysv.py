"""SysV init registration: read rc links, plan the commands that register a script (pure logic).

chkconfig (RHEL-like) and update-rc.d/insserv (Debian-like) both order scripts by their headers;
svrchain's scripts start in runlevels 3, 4, 5 and stop in 0, 1, 2, 6 (``chkconfig: 345 ...``).
"""

from __future__ import annotations

import re

START_LEVELS = ("3", "4", "5")
STOP_LEVELS = ("0", "1", "2", "6")
LINK_RE = re.compile(r"^([SK])(\d\d)(.+)$")

# One round trip's worth of shell: the init system, the registration tool, and every rc link.
PROBE = {
    "init": "if [ -d /run/systemd/system ]; then echo systemd; else echo sysv; fi",
    "tool": "command -v chkconfig || command -v update-rc.d || true",
    "links": 'for d in 0 1 2 3 4 5 6; do for f in /etc/rc$d.d/[SK][0-9]*; do '
             '[ -e "$f" ] && echo "$d ${f##*/}"; done; done; true',
}


def parse_links(text: str) -> dict[str, dict[str, str]]:
    """``{service: {runlevel: link name}}`` from PROBE's "links" output (``3 S98dbora`` lines)."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        level, _, link = line.partition(" ")
        m = LINK_RE.match(link)
        if m:
            out.setdefault(m.group(3), {})[level] = link
    return out


def registered(links: dict[str, str]) -> bool:
    """Whether a service's links are exactly: start in 3, 4, 5 and stop in 0, 1, 2, 6."""
    return all(links.get(lv, "").startswith("S") for lv in START_LEVELS) and all(
        links.get(lv, "").startswith("K") for lv in STOP_LEVELS
    )


def tool_name(probe_output: str) -> str:
    """``chkconfig`` or ``update-rc.d`` from PROBE's "tool" output; '' when neither exists."""
    path = probe_output.strip().splitlines()[0] if probe_output.strip() else ""
    return path.rsplit("/", 1)[-1]


def register_commands(tool: str, service: str, links: dict[str, str], script_changed: bool) -> list[str]:
    """The commands that register ``service`` for 3, 4, 5 (none when it already is and unchanged)."""
    ok = registered(links)
    if ok and not script_changed:
        return []
    if tool == "chkconfig":
        if not links:
            return [f"chkconfig --add {service}", f"chkconfig --level 345 {service} on"]
        # Re-read the header's priorities and levels, then make sure 3, 4, 5 are on.
        return [f"chkconfig --del {service}", f"chkconfig --add {service}",
                f"chkconfig --level 345 {service} on"]
    if tool == "update-rc.d":
        if links and not ok:
            return [f"update-rc.d -f {service} remove", f"update-rc.d {service} defaults"]
        return [f"update-rc.d {service} defaults"]
    raise ValueError(f"unknown registration tool {tool!r}")


def reregister_commands(tool: str, service: str) -> list[str]:
    """The commands that register ``service`` afresh from its script's own header."""
    if tool == "chkconfig":
        return [f"chkconfig --del {service}", f"chkconfig --add {service}"]
    return [f"update-rc.d -f {service} remove", f"update-rc.d {service} defaults"]


def starts_after(first: dict[str, str], second: dict[str, str]) -> list[str]:
    """Runlevels (of 3, 4, 5) where ``second`` does not start after ``first``; [] when in order."""
    bad = []
    for lv in START_LEVELS:
        a, b = first.get(lv, ""), second.get(lv, "")
        if not (a.startswith("S") and b.startswith("S") and b > a):  # rc runs links in name order
            bad.append(lv)
    return bad

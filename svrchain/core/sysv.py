"""SysV init registration: read rc links, plan the commands that register a script (pure logic).

chkconfig (RHEL-like) and update-rc.d/insserv (Debian-like) both order scripts by their headers;
svrchain's scripts start in runlevels 3, 4, 5 and stop in 0, 1, 2, 6 (``chkconfig: 345 ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

START_LEVELS = ("3", "4", "5")
STOP_LEVELS = ("0", "1", "2", "6")
LEVELS = "0123456"
LINK_RE = re.compile(r"^([SK])(\d\d)(.+)$")
# chkconfig reads the first "# chkconfig: <levels> <start> <stop>" comment ("-": no levels).
HEADER_RE = re.compile(r"^#\s*chkconfig:\s*(-|[0-6]+)\s+(\d{1,2})\s+(\d{1,2})\s*$", re.M)
OVERRIDES = "/etc/chkconfig.d"  # chkconfig --add reads /etc/chkconfig.d/<service> over the script's header
# One service of `chkconfig --list`: its name, then "<level>:on|off" for 0 to 6, tab separated.
LIST_RE = re.compile(r"^(\S+)\s+((?:[0-6]:(?:on|off)\s*){7})$")

# systemd is the init system when this directory exists (the test of systemd's own sd_booted()).
SYSTEMD = "[ -d /run/systemd/system ]"


def on_systemd(command: str) -> str:
    """``command`` where systemd is the init system; nothing, and exit 0, elsewhere: a systemctl
    installed beside another init answers from unit files that do not count there (and costs a process)."""
    return f"if {SYSTEMD}; then {command}; fi"


def enabled_command(*units: str) -> str:
    """Whether each unit is enabled (systemd only; one line per unit)."""
    return on_systemd(f"systemctl is-enabled {' '.join(units)}")


def status_command(service: str, unit: str) -> str:
    """Whether a service runs: its unit's state on systemd, else its init script's status (exit 0: it
    runs). The same text wherever it is asked, so that a probe runs it once."""
    return f"if {SYSTEMD}; then systemctl is-active {unit}; else /etc/init.d/{service} status; fi"


# One round trip's worth of shell: the init system, the registration tool, and every rc link.
PROBE = {
    "init": f"if {SYSTEMD}; then echo systemd; else echo sysv; fi",
    "tool": "command -v chkconfig || command -v update-rc.d || true",
    "links": 'for d in 0 1 2 3 4 5 6; do for f in /etc/rc$d.d/[SK][0-9]*; do '
             '[ -e "$f" ] && echo "$d ${f##*/}"; done; done; true',
}


def link_lists(text: str) -> dict[str, dict[str, list[str]]]:
    """``{service: {runlevel: [link names]}}`` from PROBE's "links" output (``3 S98dbora`` lines)."""
    out: dict[str, dict[str, list[str]]] = {}
    for line in text.splitlines():
        level, _, link = line.partition(" ")
        m = LINK_RE.match(link)
        if m:
            out.setdefault(m.group(3), {}).setdefault(level, []).append(link)
    return out


def parse_links(text: str) -> dict[str, dict[str, str]]:
    """``{service: {runlevel: link name}}`` from PROBE's "links" output (the last link of a level)."""
    return {svc: {lv: names[-1] for lv, names in levels.items()} for svc, levels in link_lists(text).items()}


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


@dataclass(frozen=True)
class Header:
    """An init script's ``# chkconfig:`` line: the levels it starts in, its start and stop priorities."""

    levels: str
    start: int
    stop: int


def chkconfig_header(script: str) -> Header | None:
    """The script's ``# chkconfig: 345 98 11`` line, or None when it has none."""
    m = HEADER_RE.search(script)
    if not m:
        return None
    return Header("" if m.group(1) == "-" else m.group(1), int(m.group(2)), int(m.group(3)))


def chkconfig_links(service: str, header: Header) -> dict[str, str]:
    """The rc links ``chkconfig --add`` makes from a header: ``S<start>`` in the header's levels and
    ``K<stop>`` in every other one, level 2 included when the header says 345."""
    return {lv: f"S{header.start:02d}{service}" if lv in header.levels else f"K{header.stop:02d}{service}"
            for lv in LEVELS}


def parse_list(text: str) -> dict[str, dict[str, bool]]:
    """``{service: {level: on}}`` from ``chkconfig --list`` output; other lines (errors, notes) are skipped."""
    out: dict[str, dict[str, bool]] = {}
    for line in text.splitlines():
        m = LIST_RE.match(line.strip())
        if m:
            out[m.group(1)] = {lv: state == "on" for lv, state in (f.split(":") for f in m.group(2).split())}
    return out


def describe_links(links: dict[str, str]) -> str:
    """``S98dbora in 3 4 5, K11dbora in 0 1 2 6``: each link name and the levels it is in, starts first."""
    names = sorted(dict.fromkeys(links[lv] for lv in LEVELS if lv in links), key=lambda n: (n[0] != "S", n))
    return ", ".join(f"{n} in {' '.join(lv for lv in LEVELS if links.get(lv) == n)}" for n in names)


def chkconfig_check(service: str, header: Header, links: dict[str, list[str]], listed: dict[str, dict[str, bool]]
                    ) -> tuple[bool, str]:
    """Whether ``service`` is registered exactly as ``chkconfig --add`` registers its header: one rc
    link in every level, by name, and ``chkconfig --list`` on in the header's levels only. (ok, detail)."""
    want = chkconfig_links(service, header)
    wrong = [f"rc{lv}.d has {' '.join(links.get(lv, [])) or 'no link'}, want {want[lv]}" for lv in LEVELS
             if links.get(lv) != [want[lv]]]
    if wrong:
        return False, "; ".join(wrong)
    on = listed.get(service)
    want_on = {lv: lv in header.levels for lv in LEVELS}
    if on is None:
        return False, f"chkconfig --list does not show {service}"
    if on != want_on:
        said = " ".join(f"{lv}:{'on' if on[lv] else 'off'}" for lv in LEVELS)
        return False, f"chkconfig --list says {said}, want on in {' '.join(header.levels) or 'no level'} only"
    return True, f"{describe_links(want)}; chkconfig --list: on in {' '.join(header.levels) or 'no level'}"


def override_conflict(service: str, script: str, override: str | None) -> str:
    """Why chkconfig's override file for ``service`` would register it otherwise than the script's header
    says; '' when there is none, or it says the same (the same ``# chkconfig:`` line, no LSB levels)."""
    if override is None:
        return ""
    theirs, ours = chkconfig_header(override), chkconfig_header(script)
    if theirs == ours and not re.search(r"^#\s*Default-(Start|Stop):", override, re.M):
        return ""
    said = f"'# chkconfig: {theirs.levels or '-'} {theirs.start} {theirs.stop}'" if theirs else "other levels"
    want = f"'# chkconfig: {ours.levels or '-'} {ours.start} {ours.stop}'" if ours else "the script's header"
    return (f"{OVERRIDES}/{service} overrides {service}'s {want} with {said}, and chkconfig --add uses it; "
            f"remove it (or make it say the same) so that {service} is registered as svrchain installs it")

"""A web server's sshd: its configuration files, its effective settings (``sshd -T``), the
algorithms its OpenSSH supports and the types of its host keys (what harden-sshd may require)."""

from __future__ import annotations

from dataclasses import dataclass

from svrchain.core import sshd
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState
from svrchain.facts import Fact, Raw

SSHD = "$(command -v sshd || echo /usr/sbin/sshd)"


@dataclass(frozen=True)
class SshdFacts:
    """What harden-sshd and uninstall --sshd read of sshd."""

    main: FileState  # sshd_config
    dropin: FileState  # svrchain's file in sshd_config.d
    effective_ok: bool  # `sshd -T` accepts the current configuration
    effective_text: str  # its output (or its complaint)
    supported: dict[str, set[str]]  # the algorithms this OpenSSH knows: {"kex"|"cipher"|"mac": {...}}
    host_key_types: tuple[str, ...]  # the types of the host keys sshd uses

    @property
    def effective(self) -> dict[str, str]:
        """sshd's effective settings now."""
        return sshd.effective(self.effective_text)


def parse_supported(text: str) -> dict[str, set[str]]:
    """``ssh -Q`` per query, one line each ("kex alg1 alg2 ..."), as {query: algorithms}."""
    out = {}
    for line in text.splitlines():
        query, *algs = line.split()
        out[query] = set(algs)
    return out


class SshdFact(Fact[SshdFacts]):
    name = "sshd"

    def files(self, inv: Inventory) -> list[str]:
        return [sshd.MAIN, sshd.DROPIN]

    def commands(self, inv: Inventory) -> dict[str, str]:
        return {
            "effective": f"{SSHD} -T",
            "supported": "for q in kex cipher mac; do printf '%s ' $q; ssh -Q $q | tr '\\n' ' '; echo; done",
            "hostkeys": f"for k in $({SSHD} -T | awk '$1==\"hostkey\"{{print $2}}'); do "
                        "cut -d' ' -f1 \"$k.pub\" 2>/dev/null || ssh-keygen -y -f \"$k\" | cut -d' ' -f1; done",
        }

    def parse(self, inv: Inventory, raw: Raw) -> SshdFacts:
        r = raw.results
        return SshdFacts(raw.states[sshd.MAIN], raw.states[sshd.DROPIN], r["effective"].ok, r["effective"].stdout,
                         parse_supported(r["supported"].stdout), tuple(r["hostkeys"].stdout.split()))

"""svrchain's tasks: one module per concern, wired into one collection for ``fab``."""

from __future__ import annotations

from tasks.base import collection
from tasks.bootstrap import bootstrap
from tasks.chain import restart_chain
from tasks.dbora import install_dbora
from tasks.harden import harden_sshd
from tasks.hosts import trust_hosts
from tasks.keys import gen_key, push_key
from tasks.rotate import rotate_key
from tasks.trigger import install_svr_restart
from tasks.uninstall import uninstall
from tasks.verify import verify

ns = collection(
    trust_hosts, install_dbora, gen_key, push_key, install_svr_restart, bootstrap, restart_chain, verify,
    rotate_key, harden_sshd, uninstall,
)

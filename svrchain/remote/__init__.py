"""Remote I/O: everything svrchain does to a host goes through this package.

- :mod:`~svrchain.remote.connection`: one SSH connection per host per run (pinned host keys, the
  admin's key or ssh-agent, jump hosts), a script run as root over it, and svrchain's host lock.
- :mod:`~svrchain.remote.files`: a host's files and facts read in one round trip (the probe) into
  typed :class:`~svrchain.core.plan.FileState` values, and files written atomically, removed, restored.
- :mod:`~svrchain.remote.group`: one run: the inventory's hosts, work on them in parallel, facts read
  once per run, and the report (one line per host and step).
- :mod:`~svrchain.remote.apply`: the one place a planned change takes effect (ok / would change /
  changed).
"""

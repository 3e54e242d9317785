"""svrchain's lab: real hosts (network namespaces, real sshd, PostgreSQL, Apache+PHP) on this machine."""


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do (one line, no traceback)."""

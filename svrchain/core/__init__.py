"""The pure core: no SSH, no command line, no host touched.

The inventory (its model and formats), the parsers of what hosts hold (authorized_keys, sshd_config,
SysV links, the web accounts' homes), rendering (templates, the gate, ssh options), typed file states
and outcomes, errors and exit codes, and the report's formats (terminal, --json, --junit).
"""

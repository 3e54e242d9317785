"""svrchain's lab: real hosts (network namespaces, real sshd, PostgreSQL, Apache+PHP) on this machine."""

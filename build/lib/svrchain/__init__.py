"""svrchain: start and restart a database and the web servers that depend on it, in order, over SSH."""

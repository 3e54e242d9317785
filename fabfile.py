"""svrchain: start and restart a database and the web servers that depend on it, in order.

See README.md. ``fab --list`` shows the tasks; the inventory is $INVENTORY (default
inventory/lab.yaml).
"""

from tasks import ns  # noqa: F401  (fab loads the collection named ns)

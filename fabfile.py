"""svrchain: start and restart a database and the web servers that depend on it, in order.

See README.md. ``fab --list`` shows the tasks; each takes the inventory with ``-I FILE`` (or
``$INVENTORY``, or ``INVENTORY=`` in a ``.env`` here): there is no default. Installed, the ``svrchain``
command has the same tasks built in.
"""

from tasks import ns  # noqa: F401  (fab loads the collection named ns)

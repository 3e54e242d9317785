"""systemd hosts with the site's own DB unit (db.unit): svrchain installs only the trigger, bound to it."""

from __future__ import annotations

import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    """The site's own unit exists only on systemd hosts."""
    yield from lab_of("systemd")


def test_the_trigger_follows_the_sites_own_unit(lab, tmp_path):
    # The lab's DB host already runs the database from its own unit, lab-db.service.
    data = labhosts.inventory_data()
    del data["db"]["script"]
    data["db"]["unit"] = "lab-db.service"
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(data))
    r = lab.fab("bootstrap", inventory=inv)
    assert r.returncode == 0, r.stdout + r.stderr
    db = lab.host("db")
    assert not db.file("/etc/systemd/system/dbora.service").exists
    assert "After=lab-db.service" in db.file("/etc/systemd/system/svr-restart.service").content_string
    assert "svr-restart.service" in db.check_output("systemctl show -p Wants lab-db.service")
    before = lab.host("web1").check_output("cat /var/run/apache2/apache2.pid")
    db.check_output("systemctl restart lab-db.service")
    status, body = lab.wait_page("web1", 200)
    assert status == 200, body
    assert lab.host("web1").check_output("cat /var/run/apache2/apache2.pid") != before
    assert "all 2 web server(s) restarted" in db.file("/var/log/svr_restart.log").content_string
    again = lab.fab("bootstrap", inventory=inv)
    assert again.returncode == 0 and " changed " not in again.stdout

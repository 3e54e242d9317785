"""The site's Ansible inventory (svrchain/core/ansible_inventory.py): svrchain sees the same hosts, groups
and connection variables as ``ansible-inventory --list`` itself, for the INI and YAML files of
tests/unit/fixtures/ansible/ and for that command's own JSON; and what it does not read is one line.

ansible-inventory comes from ansible-core, pinned in bench/requirements-tools.txt and installed in
.venv-tools (``make .venv-tools/.installed``, which this module runs when it is missing; the tests that
need it are skipped only when it cannot be installed). svrchain itself never needs Ansible."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from svrchain.core import ansible_inventory
from svrchain.core.ansible_inventory import AnsibleInventoryError
from svrchain.core.inventory import InventoryError, load

REPO = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "fixtures" / "ansible"
# What svrchain must see (written out by hand): name, address, port, user per web server.
WEBS = [("web01", "web01", 2200, "deploy"), ("web02", "web02", 2200, "deploy"), ("web03", "web03", 2200, "deploy"),
        ("web-a.example.com", "web-a.example.com", 2200, "www"),
        ("web-b.example.com", "web-b.example.com", 2200, "www"), ("edge", "198.18.0.30", 2222, "www")]


@pytest.fixture(scope="module")
def ansible_inventory_cmd() -> str:
    """The ansible-inventory program (installed in .venv-tools when missing)."""
    tool = REPO / ".venv-tools" / "bin" / "ansible-inventory"
    if not tool.exists() and shutil.which("ansible-inventory"):
        return str(shutil.which("ansible-inventory"))
    if not tool.exists():
        with open(REPO / ".lock-venv-tools", "w") as lock:  # one install, whichever test process asks first
            fcntl.flock(lock, fcntl.LOCK_EX)
            r = subprocess.run(["make", ".venv-tools/.installed"], cwd=REPO, capture_output=True, text=True,
                               timeout=900)
        if r.returncode != 0 or not tool.exists():
            pytest.skip(f"ansible-core cannot be installed here: {r.stderr.strip()[-300:]}")
    return str(tool)


def ansible_view(cmd: str, inventory: Path, tmp_path: Path) -> tuple[dict, str]:
    """ansible-inventory --list of ``inventory``: (its JSON, the JSON's text)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path),
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"}  # a file ansible cannot parse fails, not warns
    r = subprocess.run([cmd, "-i", str(inventory), "--list"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stdout


@pytest.fixture(scope="module")
def ansible_list(ansible_inventory_cmd, tmp_path_factory):
    """``ansible_list(inventory)``: :func:`ansible_view` of a fixture inventory, run once for this module's
    tests (ansible-inventory takes a second of CPU to start; the tests only read what it printed)."""
    seen: dict[Path, tuple[dict, str]] = {}

    def view(inventory: Path) -> tuple[dict, str]:
        if inventory not in seen:
            seen[inventory] = ansible_view(ansible_inventory_cmd, inventory, tmp_path_factory.mktemp("ansible"))
        return seen[inventory]

    return view


def members(listing: dict, group: str) -> list[str]:
    """A group's hosts and its children's, from ansible-inventory's JSON (its own walk, not svrchain's)."""
    g = listing.get(group, {})
    out = list(g.get("hosts", []))
    for child in g.get("children", []):
        out += [h for h in members(listing, child) if h not in out]
    return out


def seen_by_ansible(listing: dict, group: str) -> list[tuple[str, str, int, str]]:
    hv = listing["_meta"]["hostvars"]
    return [(h, hv[h].get("ansible_host", h), int(hv[h]["ansible_port"]) if "ansible_port" in hv[h] else None,
             hv[h].get("ansible_user")) for h in members(listing, group)]


def seen_by_svrchain(path: Path) -> tuple[tuple, list[tuple]]:
    inv = load(path)
    return ((inv.db.name, inv.db.address, inv.db.port, inv.db.user),
            [(s.name, s.address, s.port, s.user) for s in inv.web.servers])


def site(tmp_path: Path, inventory: str) -> Path:
    """The fixture site copied, its svrchain file naming ``inventory``."""
    shutil.copytree(SITE, tmp_path / "site")
    f = tmp_path / "site" / "svrchain.yaml"
    f.write_text(f.read_text().replace("inventory: hosts.ini ", f"inventory: {inventory} "))
    return f


@pytest.mark.parametrize("fmt", ["hosts.ini", "hosts.yaml"])
def test_svrchain_sees_what_ansible_inventory_sees(ansible_list, tmp_path, fmt):
    listing, _ = ansible_list(SITE / fmt)
    db, webs = seen_by_svrchain(site(tmp_path, fmt))
    assert webs == WEBS
    assert sorted(webs) == sorted(seen_by_ansible(listing, "webservers"))
    assert db == ("db1", "198.18.0.10", None, "dba") and [db] == seen_by_ansible(listing, "dbservers")


@pytest.mark.parametrize("export", [False, True])
def test_the_json_of_ansible_inventory_list(ansible_inventory_cmd, ansible_list, tmp_path, export):
    _, text = ansible_list(SITE / "hosts.ini")
    if export:  # --export: group variables in their groups, not merged into each host
        r = subprocess.run([ansible_inventory_cmd, "-i", str(SITE / "hosts.ini"), "--list", "--export"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        text = r.stdout
    f = site(tmp_path, "site.json")
    (f.parent / "site.json").write_text(text)
    shutil.rmtree(f.parent / "group_vars")  # in the JSON already: not read a second time
    assert seen_by_svrchain(f)[1] == WEBS


def test_without_ansible_the_fixtures_read_as_written():
    """The hand-written expectation, without ansible-inventory (runs everywhere)."""
    for fmt in ("hosts.ini", "hosts.yaml"):
        a = ansible_inventory.load(SITE / fmt)
        assert [(h, *a.connection(h).values()) for h in a.members("dbservers")] == [("db1", "198.18.0.10", "dba")]
        assert a.members("site") == ["db1", *(w[0] for w in WEBS)]
    assert seen_by_svrchain(SITE / "svrchain.yaml")[1] == WEBS
    assert load(SITE / "svrchain.yaml").web.servers[5].health_url == "http://198.18.0.30/health"


@pytest.mark.parametrize(("pattern", "hosts"), [
    ("web[1:3]", ["web1", "web2", "web3"]), ("web[08:10]", ["web08", "web09", "web10"]),
    ("db-[a:c]", ["db-a", "db-b", "db-c"]), ("w[0:6:3]x", ["w0x", "w3x", "w6x"]),
    ("r[1:2]c[1:2]", ["r1c1", "r1c2", "r2c1", "r2c2"]), ("plain", ["plain"]),
])
def test_host_ranges(pattern, hosts):
    assert ansible_inventory.expand(pattern, Path("h")) == hosts


def write(tmp_path: Path, name: str, text: str, svr: str = "") -> Path:
    (tmp_path / name).write_text(text)
    f = tmp_path / "svrchain.yaml"
    f.write_text(f"ansible: {{inventory: {name}, db_group: db, web_group: web}}\n"
                 "connect: {known_hosts: kh}\ndb: {script: s, ready: {port: 1}, run: {process: x}}\n" + svr)
    return f


@pytest.mark.parametrize(("name", "text", "svr", "expected"), [
    ("aws.yml", "plugin: amazon.aws.aws_ec2\n", "",
     "aws.yml: an inventory plugin (amazon.aws.aws_ec2) is not read by svrchain; give it the output of "
     "`ansible-inventory -i <it> --list` saved as a .json file"),
    ("h.ini", "[db]\ndb1\ndb2\n[web]\nw1\n", "",
     "svrchain.yaml: ansible.db_group: the group 'db' of {d}/h.ini has 2 hosts (db1, db2); it must have one, "
     "the DB server"),
    ("h.ini", "[db]\ndb1\n[web]\nw1\n", "web: {servers: [{name: w9, address: 1.2.3.4, health_url: 'http://x/'}]}\n",
     "svrchain.yaml: web.servers: given by the Ansible inventory {d}/h.ini; remove it here (hosts are named once)"),
    ("h.ini", "[db]\ndb1\n[webs]\nw1\n", "", "h.ini: no group 'web' (its groups: all, db, webs)"),
    ("h.ini", "[db]\ndb1 ansible_port=ssh\n[web]\nw1\n", "", "h.ini: db1: ansible_port: must be a whole number"),
    ("h.ini", "[db]\ndb1\n[web]\nw1\n[web:hosts]\n", "", "h.ini:5: [web:hosts]: not a section svrchain reads"),
    ("h.ini", "[db]\ndb1\n[web]\nw[3:1]\n", "", "h.ini: w[3:1]: an empty range"),
])
def test_what_svrchain_does_not_read_is_one_line(tmp_path, name, text, svr, expected):
    f = write(tmp_path, name, text, svr)
    with pytest.raises((InventoryError, AnsibleInventoryError)) as e:
        load(f)
    assert len(str(e.value).splitlines()) == 1
    assert expected.format(d=tmp_path) in str(e.value), str(e.value)


def test_a_hostile_host_value_is_refused_as_any_inventory_value(tmp_path):
    hostile = "w1 'ansible_host=1.2.3.4 -oProxyCommand=x'"
    f = write(tmp_path, "h.ini", f"[db]\ndb1 ansible_host=198.18.0.10\n[web]\n{hostile}\n")
    with pytest.raises(InventoryError) as e:
        load(f)
    assert "must not contain spaces" in str(e.value)



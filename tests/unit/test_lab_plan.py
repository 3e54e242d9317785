"""The lab's plan: full hosts by default, light web hosts (the scale bench's) up to 200, addresses in order;
one DB host by default, or db1 and db2 (db2 a streaming standby), and where the web page finds the database."""

import pytest

from lab import LabError, dbpair, hosts


def test_full_hosts_stay_the_default():
    plan = hosts.plan(2)
    assert [(h.name, h.role, h.kind) for h in plan] == [("db", "db", "full"), ("web1", "web", "full"),
                                                        ("web2", "web", "full")]


def test_two_hundred_light_web_hosts_fit_the_subnet_in_order():
    plan = hosts.plan(200, kind="light")
    assert plan[0].kind == "full" and plan[0].address == "198.18.0.10"  # the DB host is always full
    webs = plan[1:]
    assert all(h.kind == "light" for h in webs)
    assert [h.address for h in webs] == [f"198.18.0.{20 + i}" for i in range(1, 201)]
    assert len({h.veth for h in plan}) == 201 and all(len(h.veth) <= 15 for h in plan)


@pytest.mark.parametrize(("count", "kind", "init"), [(201, "light", "sysv"), (61, "full", "sysv"), (0, "light", "sysv"),
                                                     (2, "light", "systemd"), (2, "tiny", "sysv")])
def test_what_the_lab_cannot_do_is_one_line(count, kind, init):
    with pytest.raises(LabError) as exc:
        hosts.plan(count, init, kind)
    assert str(exc.value).startswith("lab: ") and "\n" not in str(exc.value)


def test_two_db_hosts_db1_and_db2_before_the_web_hosts():
    plan = hosts.plan(2, db_count=2)
    assert [(h.name, h.role, h.address, h.standby_of) for h in plan] == [
        ("db1", "db", "198.18.0.10", ""), ("db2", "db", "198.18.0.11", ""),
        ("web1", "web", "198.18.0.21", ""), ("web2", "web", "198.18.0.22", "")]
    # known_hosts is by address: db1 has the host key of db (the same address in another slot's lab).
    assert [h.key_name for h in plan[:2]] == ["db", "db2"]


@pytest.mark.parametrize("init", hosts.INITS)
def test_a_standby_is_db2_following_db1_on_every_init(init):
    plan = hosts.plan(1, init, standby=True)
    assert [(h.name, h.init, h.standby_of) for h in plan] == [
        ("db1", init, ""), ("db2", init, "198.18.0.10"), ("web1", init, "")]


@pytest.mark.parametrize(("db", "count", "standby"), [("oracle", 2, True), ("postgres", 3, False),
                                                      ("postgres", 0, False)])
def test_what_the_pair_cannot_be_is_one_line(db, count, standby):
    with pytest.raises(LabError) as exc:
        hosts.plan(1, db=db, db_count=count, standby=standby)
    assert str(exc.value).startswith("lab: ") and "\n" not in str(exc.value)


def test_the_default_page_is_the_file_as_it_is():
    page = (hosts.FILES / "index.php").read_text()
    assert dbpair.PAGE_DB_LINE in page
    assert dbpair.render_page(page, dbpair.page_for(hosts.plan(2))) == page
    assert dbpair.render_page(page, dbpair.page_for(hosts.plan(2, db_count=2))) == page  # db1 alone


def test_a_standbys_pages_reach_the_pair_read_write():
    line = dbpair.page_for(hosts.plan(2, standby=True))
    assert line == "$lab = ['host' => '198.18.0.10,198.18.0.11', 'port' => 5432, 'oracle' => false, 'pair' => true];"
    assert dbpair.page_for(hosts.plan(2, db="oracle")) == (
        "$lab = ['host' => '198.18.0.10', 'port' => 1521, 'oracle' => true, 'pair' => false];")


@pytest.mark.parametrize("bad", [[], ["198.18.0.10'; system('id'); '"], ["10.0.0.1"], ["198.18.0.10", "db2"]])
def test_a_page_points_only_at_lab_addresses(bad):
    with pytest.raises(LabError, match=r"^lab: the page's database"):
        dbpair.page_line(bad)

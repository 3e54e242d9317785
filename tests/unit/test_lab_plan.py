"""The lab's plan: full hosts by default, light web hosts (the scale bench's) up to 200, addresses in order."""

import pytest

from lab import LabError, hosts


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

"""The scale bench's verdicts on issue 23's targets: ratios, and the fan-out's CPU per web host."""

from __future__ import annotations

from bench.scale import per_host_ms, show_restart_target, verdict


def test_the_fan_out_beyond_its_floor_is_cpu_per_web_host_on_shared_cores():
    # December 2, N = 100 on two cores: 6.37 s held against a 4.07 s floor is 46 ms a host; the floor
    # + 1 s leaves 20 ms, and 1.5× the floor 40.7 ms.
    assert per_host_ms(6.37, 4.07, 100, 2) == 46.0
    assert per_host_ms(4.07 + 1, 4.07, 100, 2) == 20.0
    assert per_host_ms(4.07 * 1.5, 4.07, 100, 2) == 40.7
    assert per_host_ms(1.0, 0.5, 1, 4) == 2000.0


def test_nothing_measured_is_said_so():
    assert per_host_ms(None, 4.07, 100, 2) is None
    assert per_host_ms(6.37, None, 100, 2) is None
    assert per_host_ms(6.37, 4.07, 0, 2) is None
    assert verdict(None, 1.0, 1.5) == "not measured"
    assert verdict(1.0, 0.0, 1.5) == "not measured"


def test_a_ratio_within_the_target_is_met_and_beyond_it_missed():
    assert verdict(1.5, 1.0, 1.5) == "1.50× (target ≤ 1.5×: met)"
    assert verdict(1.51, 1.0, 1.5) == "1.51× (target ≤ 1.5×: MISSED)"


def test_the_budget_is_printed_where_the_fan_out_is_cpu_bound_only(capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    res = {"fan_out": {"ready_to_last_restart_s": 7.78}, "fan_out_held_5s": {"ready_to_last_restart_s": 6.37},
           "restart_floor": {"to_last_healthy_s": 4.07}}
    show_restart_target(100, res)
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("→last 7.78 s; CPU per web host beyond the restart 74.2 ms, the target leaves 40.7 ms")
    assert "1.91× (target ≤ 1.5×: MISSED)" in out[0]
    assert out[1] == ("bench: N=100: DB start held 5 s: ready→last restart 6.37 s against the floor + 1 s (5.07 s): "
                      "MISSED; CPU per web host beyond the restart 46.0 ms, the target leaves 20.0 ms")
    show_restart_target(1, {**res, "fan_out_held_5s": {"ready_to_last_restart_s": 0.28},
                            "restart_floor": {"to_last_healthy_s": 0.2}})
    out = capsys.readouterr().out.splitlines()
    assert "CPU per web host" not in "".join(out)  # one host: latency, not the cores
    assert out[1].endswith("(1.20 s): met")

"""The scale bench's verdicts on issue 23's targets: ratios, and the fan-out's CPU per web host."""

from __future__ import annotations

from bench.scale import per_host_ms, verdict


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

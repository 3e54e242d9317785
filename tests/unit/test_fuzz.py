"""Fuzzing with hypothesis: bad input yields a clear error, never a traceback or a damaged file."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svrchain.core import authkeys
from svrchain.core.authkeys import BadKey
from svrchain.core.inventory import InventoryError, parse
from tests import fastyaml
from tests.examples import examples
from tests.paths import LAB_INVENTORY
from tests.unit.test_authkeys import KEY, MARK, OTHER

SRC = Path("inventory/fuzz.yaml")
LAB = fastyaml.load(LAB_INVENTORY.read_text())
FUZZ = settings(max_examples=examples(300, 3000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Examples that each build a whole inventory or file (several ms each): fewer in make unit.
FUZZ_HEAVY = settings(FUZZ, max_examples=examples(120, 3000))

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                           max_size=4), max_leaves=12)


def check_parse(text: str) -> None:
    try:
        parse(text, SRC)
    except InventoryError as exc:
        message = str(exc)
        assert message and all(line.startswith(f"{SRC}") for line in message.splitlines()), message
        assert "Traceback" not in message


@FUZZ
@given(st.text(max_size=300))
def test_any_text_is_an_inventory_or_a_clear_error(text):
    check_parse(text)


@FUZZ_HEAVY
@given(values)
def test_any_yaml_value_is_an_inventory_or_a_clear_error(value):
    check_parse(fastyaml.dump(value))


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


LAB_PATHS = list(_paths(LAB))


@FUZZ_HEAVY
@given(st.sampled_from(LAB_PATHS), values)
def test_one_changed_value_is_an_inventory_or_a_clear_error(path, value):
    data = copy.deepcopy(LAB)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    check_parse(fastyaml.dump(data))


# Sample lines, each labelled by hand: svrchain's (our key, or our marker as the comment) or not. The
# merge property checks against these labels, not against the recogniser the merge itself uses.
KEY_LINES = [
    (KEY.text(), True), (f"no-pty {KEY.text()}", True), (f"ssh-ed25519 {KEY.blob} {MARK}", True),
    (f"  ssh-ed25519 {KEY.blob}", True), (f"ssh-ed25519 {OTHER.blob} {MARK}", True),
    (f'command="x" {KEY.blob}', False), (f"# {KEY.text()}", False), (f"ssh-ed25519 {OTHER.blob} {MARK}-old", False),
    ("ssh-rsa AAAAB3NzaC1yc2E= other", False), ('# comment "quoted', False),
    ('from="a b",no-pty ssh-ed25519 AAAA c', False), ("", False), (" ", False), ("\t", False),
]
# Other text: one line each as sshd reads it (no newline; a carriage return or a Unicode line break is part
# of its line), never naming svrchain.
other_lines = st.text(max_size=40).filter(lambda s: "\n" not in s and "svrchain" not in s)
files = st.lists(st.one_of(st.sampled_from(KEY_LINES), other_lines.map(lambda s: (s, False))),
                 max_size=8).flatmap(
    lambda lines: st.tuples(st.just(lines), st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines),
                                                     max_size=len(lines)), st.booleans()))


def entries(parts) -> list[tuple[str, str, bool]]:
    """(line, its ending, whether it is svrchain's) for each line of the file; the last without its
    ending when the file has no final newline (and gone if it was empty)."""
    lines, endings, final = parts
    out = [(line, end, ours) for (line, ours), end in zip(lines, endings, strict=True)]
    if out and not final:
        line, _, ours = out.pop()
        if line:
            out.append((line, "", ours))
    return out


def as_text(parts) -> str:
    return "".join(line + end for line, end, _ in entries(parts))


def expected_merge(parts, line: str) -> str:
    """What merging ``line`` must give: it replaces the first of svrchain's lines (keeping its ending),
    the others go, every other line stays; with none, it goes last, or first if the last line has no
    newline."""
    out, placed = [], False
    for text, end, ours in entries(parts):
        if ours:
            if not placed:
                out.append(line + (end or "\n"))
                placed = True
        else:
            out.append(text + end)
    if not placed:
        if out and not out[-1].endswith("\n"):
            out.insert(0, line + "\n")
        else:
            out.append(line + "\n")
    return "".join(out)


LINE = authkeys.restricted_line(KEY, ["198.18.0.10"], "/usr/local/sbin/svr-restart-gate", True, MARK)


@FUZZ_HEAVY
@given(files)
def test_merge_keeps_every_other_line_and_is_idempotent(parts):
    text = as_text(parts)
    merged = authkeys.merge_line(text, LINE, KEY.blob, MARK)
    assert merged == expected_merge(parts, LINE)
    assert authkeys.remove_lines(text, KEY.blob, MARK) == "".join(
        line + end for line, end, ours in entries(parts) if not ours)
    assert authkeys.find_lines(merged, KEY.blob, MARK) == [LINE]
    assert authkeys.merge_line(merged, LINE, KEY.blob, MARK) == merged


@FUZZ
@given(st.text(max_size=200))
def test_public_key_parsing_never_crashes(text):
    try:
        authkeys.parse_public_key(text)
    except BadKey as exc:
        assert str(exc)
    authkeys.line_blob(text)
    authkeys.line_comment(text)


@pytest.mark.parametrize("text", ["a: !!int x", "a: !!float x", "a: !!bool x", "a: !!timestamp x",
                                  "a: !!timestamp 2020-13-45", "db:\n  ready: {timeout: !!int 1e}\n"])
def test_a_value_that_does_not_fit_its_tag_is_a_clear_error(text):
    """YAML's own tags on a value that is not one (PyYAML raised ValueError, KeyError, AttributeError:
    a traceback for the user)."""
    with pytest.raises(InventoryError) as e:
        parse(text, SRC)
    check_parse(text)
    assert "(does not fit its tag)" in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)


@pytest.mark.parametrize(("text", "said"), [
    ("db:\n  ready: {timeout: !!int soon}\n", "2:20: 'soon' is no int"),
    ("a: [1, !!float z]\n", "1:8: 'z' is no float"),
    ("a: {b: !!bool x}\n", "1:8: 'x' is no bool"),
    ("a:\n- !!timestamp 2020-13-45\n", "2:3: '2020-13-45' is no timestamp"),
    ("a: !!int 5\nb: !!int x\n", "2:4: 'x' is no int"), ("a: !!timestamp x\n", "1:4: 'x' is no timestamp"),
])
def test_the_value_that_does_not_fit_its_tag_is_named_where_it_is(text, said):
    with pytest.raises(InventoryError) as e:
        parse(text, SRC)
    where, what = said.split(": ", 1)
    assert str(e.value) == (f"{SRC}:{where}: not valid YAML: {what} (does not fit its tag); remove the tag or "
                            "fix the value")

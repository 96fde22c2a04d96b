"""Property-based tests (hypothesis) of the parsers of user files (issue #27 item 7): arch strings, dataset CSVs,
latency table CSVs/YAML and search state files either parse to what prints back, or raise a ValueError that
names the file; never another exception, never a silently different value."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import supernets
from predictors.accuracy.dataset import COLUMNS, read_dataset
from predictors.latency.table import LatencyTableError, load_meta, parse_table_csv
from search.state import load_state, save_state

SPACE = supernets.create_supernet("ofa_mbv3_tiny").space
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.integers(0, 2**32 - 1))
def test_every_arch_prints_back_to_itself(seed):
    arch = SPACE.sample(np.random.default_rng(seed))
    assert SPACE.parse(str(arch)) == arch and str(SPACE.parse(str(arch))) == str(arch)


# a valid arch string with one token replaced by look-alikes: non-ASCII digits, signs, spaces, leading zeros
LOOKALIKES = st.sampled_from(["٣", "３", "+3", "-3", " 3", "3 ", "03", "3.0", "1e1", "³", "3\n", "", "x", "_"])


@FAST
@given(st.integers(0, 2**32 - 1), st.data())
def test_a_perturbed_arch_string_parses_to_what_it_prints_or_is_refused(seed, data):
    text = str(SPACE.sample(np.random.default_rng(seed)))
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    i = data.draw(st.sampled_from(digits))
    bad = text[:i] + data.draw(LOOKALIKES) + text[i + 1:]
    try:
        arch = SPACE.parse(bad)
    except ValueError:
        return
    assert str(arch) == bad.strip()  # accepted only when it is the canonical string


@pytest.mark.parametrize("token", ["٣", "３", "+3", "03", " 3"])
def test_non_ascii_digits_signs_and_leading_zeros_in_an_arch_are_refused_by_name(token):
    text = str(SPACE.max_arch()).replace("ks=7", f"ks={token}", 1)
    with pytest.raises(ValueError, match=r"gene 'ks' value .* is not a number written in ASCII digits"):
        SPACE.parse(text)


def _dataset(tmp_path, n=5):
    from predictors.accuracy.dataset import AccuracyDataset, write_dataset

    archs = list(dict.fromkeys(SPACE.sample(np.random.default_rng(i)) for i in range(n)))
    ds = AccuracyDataset(SPACE, archs, np.linspace(0.1, 0.9, len(archs)), np.full(len(archs), 1e6),
                         np.full(len(archs), 1e4), "ofa_mbv3_tiny")
    return write_dataset(ds, tmp_path / "d.csv")


@FAST
@given(st.data())
def test_a_cut_or_corrupted_dataset_csv_is_read_whole_or_refused_naming_the_file(tmp_path_factory, data):
    path = _dataset(tmp_path_factory.mktemp("ds"))
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=8))
    path.write_bytes(raw[:cut] + junk)
    try:
        ds = read_dataset(path)
    except ValueError as e:
        assert str(path) in str(e) or path.name in str(e)
        return
    assert len(ds) >= 1 and np.all((ds.top1 >= 0) & (ds.top1 <= 1))


def test_a_truncated_dataset_row_names_the_real_field_count(tmp_path):
    path = _dataset(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], lines[-1].rsplit(",", 2)[0]]) + "\n")
    with pytest.raises(ValueError, match=rf"d.csv:{len(lines)}: row has 2 fields, expected {len(COLUMNS)}"):
        read_dataset(path)


@FAST
@given(st.lists(st.sampled_from([*list("0123456789.,-_ekxr\n "), "nan", "inf", "٣"]), max_size=40))
def test_table_csv_rows_parse_or_are_refused_naming_the_file(tokens):
    text = "resolution,key,latency_ms,std_ms,count\n" + "".join(tokens)
    try:
        entries, _, _ = parse_table_csv(text, "t/table.csv")
    except LatencyTableError as e:
        assert "t/table.csv" in str(e)
        return
    assert all(np.isfinite(v) and v >= 0 for v in entries.values())


@FAST
@given(st.text(max_size=60))
def test_any_meta_yaml_loads_as_a_mapping_or_is_refused_naming_the_file(tmp_path_factory, body):
    folder = tmp_path_factory.mktemp("meta")
    (folder / "meta.yaml").write_text(body, encoding="utf-8")
    try:
        meta = load_meta(folder)
    except LatencyTableError as e:
        assert "meta.yaml" in str(e)
        return
    assert isinstance(meta, dict)


@FAST
@given(st.data())
def test_a_cut_or_corrupted_search_state_loads_whole_or_is_refused_naming_the_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "search_state.npz"
    save_state(path, evaluator={"encoded": np.arange(12).reshape(3, 4)}, meta={"devices": {"a": {"gen": 2}}},
               arrays={"a": {"pop": np.arange(4)}})
    raw = path.read_bytes()
    i = data.draw(st.integers(0, len(raw)))
    path.write_bytes(raw[:i] + data.draw(st.binary(max_size=16)) + raw[i + data.draw(st.integers(0, 16)):])
    try:
        ev, meta, arrays = load_state(path)
    except ValueError as e:
        assert str(path) in str(e)
        return
    assert isinstance(meta, dict) and isinstance(ev, dict) and isinstance(arrays, dict)

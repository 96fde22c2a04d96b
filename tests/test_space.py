"""Property tests of the search-space contract (supernets/space.py) for both OFA families."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supernets.space import UNUSED, Arch, MobileNetV3Space, ResNetSpace, SearchSpace

SPACES: dict[str, SearchSpace] = {
    "mbv3": MobileNetV3Space(),
    "mbv3_tiny": MobileNetV3Space(name="ofa_mbv3_tiny", depths=(1, 2, 3), n_stages=3, resolutions=(24, 28, 32)),
    "resnet": ResNetSpace(),
}
PROPS = settings(max_examples=60, deadline=None)


@st.composite
def encoded_rows(draw: st.DrawFn, space: SearchSpace) -> np.ndarray:
    """Any valid index row, unused slots included (they must not matter)."""
    return np.array([draw(st.integers(0, int(n) - 1)) for n in space.n_choices], dtype=np.int64)


@st.composite
def space_and_arch(draw: st.DrawFn) -> tuple[SearchSpace, Arch]:
    space = SPACES[draw(st.sampled_from(sorted(SPACES)))]
    return space, space.decode(draw(encoded_rows(space))[None, :])[0]


@PROPS
@given(space_and_arch())
def test_string_form_round_trips(sa: tuple[SearchSpace, Arch]) -> None:
    space, arch = sa
    text = str(arch)
    assert space.parse(text) == arch
    assert hash(space.parse(text)) == hash(arch)
    assert all(c.isalnum() or c in "=_-." for c in text)  # safe in file names and CSV cells


@PROPS
@given(space_and_arch())
def test_encode_decode_round_trips(sa: tuple[SearchSpace, Arch]) -> None:
    space, arch = sa
    x = space.encode([arch, arch])
    assert x.shape == (2, space.n_columns)
    assert space.decode(x) == [arch, arch]
    assert np.array_equal(space.normalize(x), x)  # encoded archs are canonical


@PROPS
@given(space_and_arch())
def test_ofa_dict_round_trips(sa: tuple[SearchSpace, Arch]) -> None:
    space, arch = sa
    d = arch.to_ofa_dict()
    assert space.from_ofa_dict(d) == arch
    assert all(v is not None for g in d.values() if isinstance(g, list) for v in g)  # OFA code needs full lists


@PROPS
@given(st.sampled_from(sorted(SPACES)), st.data())
def test_values_in_unused_slots_do_not_change_the_arch(key: str, data: st.DataObject) -> None:
    space = SPACES[key]
    row = data.draw(encoded_rows(space))
    other = data.draw(encoded_rows(space))
    unused = ~space.active_mask(row[None, :])[0]
    mixed = np.where(unused, other, row)  # same used genes, arbitrary unused ones
    a, b = space.decode(row[None, :])[0], space.decode(mixed[None, :])[0]
    assert a == b and str(a) == str(b)
    norm = space.normalize(mixed[None, :])[0]
    assert np.all(norm[unused] == UNUSED) and np.all(norm[~unused] >= 0)
    assert np.array_equal(space.normalize(norm[None, :]), norm[None, :])  # idempotent


@PROPS
@given(space_and_arch())
def test_one_hot_has_one_entry_per_used_column(sa: tuple[SearchSpace, Arch]) -> None:
    space, arch = sa
    oh = space.one_hot([arch])
    assert oh.shape == (1, space.one_hot_size)
    assert oh.sum() == (np.array(arch.idx) >= 0).sum()


@pytest.mark.parametrize("key", sorted(SPACES))
def test_sampling_is_reproducible_with_the_same_seed(key: str) -> None:
    space = SPACES[key]
    a = space.sample(np.random.default_rng(123), 50)
    b = space.sample(np.random.default_rng(123), 50)
    c = space.sample(np.random.default_rng(124), 50)
    assert a == b
    assert a != c
    assert len(set(a)) > 45  # the spaces are huge: repeats are rare
    with pytest.raises(TypeError, match="Generator"):
        space.sample(123)  # type: ignore[arg-type]


def test_max_and_min_archs_take_the_extreme_choices() -> None:
    space = SPACES["mbv3"]
    big, small = space.max_arch(), space.min_arch()
    assert big.d == (4,) * 5 and set(big.ks) == {7} and set(big.e) == {6} and big.r == 224
    assert small.d == (2,) * 5 and set(small.ks) == {3, None} and small.r == 128
    assert space.max_arch(resolution=160).r == 160


@pytest.mark.parametrize(
    "space",
    [
        MobileNetV3Space(name="small_mbv3", kernel_sizes=(3, 5), expand_ratios=(3, 6), depths=(1, 2), n_stages=2,
                         resolutions=(32,)),
        ResNetSpace(name="small_resnet", base_depths=(1, 1), depths=(0, 1), expand_ratios=(0.2, 0.35),
                    width_mults=(0.5, 1.0), resolutions=(32,)),
    ],
    ids=["mbv3", "resnet"],
)
def test_count_equals_brute_force_enumeration_of_distinct_archs(space: SearchSpace) -> None:
    rows = np.array(list(itertools.product(*[range(int(n)) for n in space.n_choices])), dtype=np.int64)
    distinct = np.unique(space.normalize(rows), axis=0)
    assert space.count() == len(distinct)


# --------------------------------------------------------------------------------- bad input
def test_unknown_gene_raises_naming_the_genes() -> None:
    space = SPACES["mbv3"]
    with pytest.raises(ValueError, match=r"unknown gene 'w'.*\['r', 'd', 'ks', 'e'\]"):
        space.arch(r=224, d=[2] * 5, ks=[3] * 20, e=[3] * 20, w=[1.0])
    with pytest.raises(ValueError, match="unknown gene 'q'"):
        space.parse("r=224_q=1")


@PROPS
@given(st.integers(0, 19), st.sampled_from([1, 2, 4, 9, 11]))
def test_kernel_not_in_choices_raises_naming_gene_value_and_choices(slot: int, bad: int) -> None:
    space = SPACES["mbv3"]
    ks = [7] * 20
    ks[slot] = bad
    with pytest.raises(ValueError, match=rf"gene ks\[{slot}\].*value {bad}\b.*allowed choices \[3, 5, 7\]"):
        space.arch(r=224, d=[4] * 5, ks=ks, e=[6] * 20)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"r": 225}, r"gene r .*225.*allowed choices \[128, 132"),
        ({"d": [2, 3, 4, 5, 2]}, r"gene d\[3\].*5.*\[2, 3, 4\]"),
        ({"e": [3] * 19}, r"gene 'e' needs 20 values.*got 19"),
        ({"ks": 3}, r"gene 'ks' needs a sequence of 20 values"),
    ],
)
def test_bad_values_and_lengths_raise_value_error(kwargs: dict, pattern: str) -> None:
    space = SPACES["mbv3"]
    genes = {"r": 224, "d": [4] * 5, "ks": [3] * 20, "e": [3] * 20, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        space.arch(**genes)


@pytest.mark.parametrize(
    "text",
    ["", "r224", "r=224_d=2-2", "r=abc_d=2-2-2-2-2_ks=3_e=3", "r=224_d=2-2-2-2-2_ks=3-3_e=3-3"],
)
def test_malformed_strings_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        SPACES["mbv3"].parse(text)


def test_encoded_rows_out_of_range_raise_naming_the_column() -> None:
    space = SPACES["mbv3"]
    x = space.encode([space.max_arch()])
    x[0, space.group_slices["ks"].start + 3] = 3
    with pytest.raises(ValueError, match=r"ks\[3\].*index 3 out of range.*\[3, 5, 7\]"):
        space.decode(x)
    with pytest.raises(ValueError, match="shape"):
        space.decode(x[:, :-1])


def test_resnet_ofa_dict_uses_width_indices() -> None:
    space = SPACES["resnet"]
    arch = space.max_arch()
    d = arch.to_ofa_dict()
    assert d["w"] == [2] * 6 and arch.w == (1.0,) * 6
    with pytest.raises(ValueError, match=r"w\[0\].*7"):
        space.from_ofa_dict({**d, "w": [7] + [2] * 5})


def test_a_gene_given_twice_in_a_string_raises() -> None:
    space = SPACES["mbv3"]
    text = str(space.max_arch())
    with pytest.raises(ValueError, match="gene 'r' appears more than once"):
        space.parse("r=128_" + text)


@pytest.mark.parametrize(("key", "gene"), [("mbv3", "ks"), ("mbv3", "d"), ("resnet", "e"), ("resnet", "w")])
def test_ofa_dict_with_a_scalar_gene_raises_value_error(key: str, gene: str) -> None:
    space = SPACES[key]
    d = space.max_arch().to_ofa_dict()
    with pytest.raises(ValueError, match=f"gene '{gene}' of an OFA dict must be a list"):
        space.from_ofa_dict({**d, gene: 3})


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"resolutions": (224, 128)}, r"resolutions must be a non-empty strictly increasing tuple"),
        ({"resolutions": (128, 128)}, r"resolutions must be a non-empty strictly increasing tuple"),
        ({"resolutions": ()}, r"resolutions must be a non-empty"),
        ({"expand_ratios": (0.35, 0.2)}, r"expand_ratios must be"),
        ({"width_mults": (1.0, 0.65)}, r"width_mults must be"),
        ({"depths": (1,)}, r"at least two values"),
        ({"base_depths": (2, 0)}, r"base_depths must be"),
    ],
)
def test_resnet_space_rejects_choices_its_encoding_cannot_hold(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        ResNetSpace(**kwargs)

"""Elastic ViTs: AutoFormer's published spaces and subnets, extraction, relative positions, MACs/params."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
import yaml

from supernets import count_macs, count_params, create_supernet
from supernets.layers.attention import RelativePosition2D
from supernets.vit import ElasticViT
from supernets.vit_space import VitSpace

# AutoFormer's own count (its get_sampled_params_numel) of its three searched subnets: 5.868M / 22.891M / 53.692M.
PUBLISHED_PARAMS = {"t": 5_867_944, "s": 22_891_432, "b": 53_691_688}


def _retrain(size: str) -> dict:
    text = resources.files("supernets.data").joinpath("autoformer", f"AutoFormer-{size.upper()}.yaml").read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize("size", ["t", "s", "b"])
def test_autoformer_published_subnets_have_autoformers_parameter_counts(size: str) -> None:
    # The meta device allocates no memory: AutoFormer-B's 80 M supernet weights build in milliseconds.
    kwargs = {"mlp_ratios": (3.0, 3.5, 4.0)} if size == "t" else {}
    with torch.device("meta"):
        model = create_supernet(f"autoformer_{size}", **kwargs)
        arch = model.space.from_autoformer_dict(_retrain(size))
        model.set_active_subnet(arch)
        sub = model.get_active_subnet()
    assert count_params(sub) == PUBLISHED_PARAMS[size]
    assert int(model.macs_params([arch])[1][0]) == PUBLISHED_PARAMS[size]
    assert model.space.to_autoformer_dict(arch) == {k: v for k, v in _retrain(size)["RETRAIN"].items()}
    assert model.space.parse(str(arch)) == arch


def test_autoformer_t_published_subnet_is_outside_its_search_space_and_says_how_to_load_it() -> None:
    with torch.device("meta"):
        model = create_supernet("autoformer_t")
    with pytest.raises(ValueError, match=r"gene mlp\[2\].*3\.0.*\[3\.5, 4\.0\]"):
        model.space.from_autoformer_dict(_retrain("t"))


def test_autoformer_spaces_are_the_published_yaml_spaces() -> None:
    with torch.device("meta"):
        t, s, b = (create_supernet(f"autoformer_{k}") for k in "tsb")
    assert (t.space.embed_dims, t.space.num_heads, t.space.mlp_ratios, t.space.depths) == (
        (192, 216, 240), (3, 4), (3.5, 4.0), (12, 13, 14))
    assert (s.space.embed_dims, s.space.num_heads, s.space.mlp_ratios, s.space.depths) == (
        (320, 384, 448), (5, 6, 7), (3.0, 3.5, 4.0), (12, 13, 14))
    assert (b.space.embed_dims, b.space.num_heads, b.space.mlp_ratios, b.space.depths) == (
        (528, 576, 624), (9, 10), (3.0, 3.5, 4.0), (14, 15, 16))
    # Weights at SUPERNET's shapes, which exceed the largest searchable choice for T and B.
    assert (t.max_embed, len(t.blocks), t.max_heads, b.max_embed, len(b.blocks)) == (256, 14, 4, 640, 16)
    assert t.blocks[0].attn.qkv.weight.shape == (3 * 4 * 64, 256)
    assert t.blocks[0].attn.rel_k.table_v.shape == (2 * 14 + 2, 64)


def _small_relpos_vit() -> ElasticViT:
    space = VitSpace(name="relpos_small", embed_dims=(24, 40), num_heads=(1, 2, 3), mlp_ratios=(1.5, 2.0),
                     depths=(1, 2, 3), resolutions=(16, 20))  # 16 px: the position embedding is resampled
    torch.manual_seed(0)
    return ElasticViT(space, patch_size=4, head_dim=8, rel_pos=2, max_embed=48, num_classes=5)


@pytest.mark.parametrize("name", ["vit_cifar_tiny", "relpos"])
def test_extracted_vit_equals_supernet_and_counts_match_torchs_counter(name: str) -> None:
    model = _small_relpos_vit() if name == "relpos" else create_supernet(name)
    model.eval()
    archs = [model.space.max_arch(), model.space.min_arch(), *model.space.sample(np.random.default_rng(0), 2)]
    macs, params = model.macs_params(archs)
    for k, arch in enumerate(archs):
        model.set_active_subnet(arch)
        sub = model.get_active_subnet().eval()
        assert type(sub.blocks[0]).__module__.startswith("timm.")  # timm's ViT block
        x = torch.randn(2, 3, arch.r, arch.r, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert (model(x) - sub(x)).abs().max().item() < 1e-5, str(arch)
        assert count_macs(sub, arch.r) == macs[k], str(arch)
        assert count_params(sub) == params[k], str(arch)
    assert macs[0] > macs[2:].max() and macs[1] < macs[2:].min()
    if name == "relpos":
        assert {a.r for a in archs} == {16, 20}


def test_relative_position_table_indexes_clipped_grid_offsets_with_row_zero_for_the_class_token() -> None:
    rel = RelativePosition2D(head_dim=1, max_relative_position=1)
    with torch.no_grad():
        rel.table_v.copy_(torch.tensor([[0.0], [10.0], [20.0], [30.0]]))  # rows: cls, dy=-1, 0, +1
        rel.table_h.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    emb = rel(1 + 9)[..., 0]  # class token + a 3x3 grid
    assert emb[0].eq(0).all() and emb[:, 0].eq(0).all()
    # patch 0 (row 0, col 0) to patch 8 (row 2, col 2): offsets (+2, +2) clipped to (+1, +1)
    assert emb[1, 9].item() == 33.0 and emb[9, 1].item() == 11.0 and emb[5, 5].item() == 22.0
    # patch 1 (0, 1) to patch 3 (1, 0): dy +1, dx -1
    assert emb[2, 4].item() == 31.0


def test_vit_arch_strings_round_trip_and_bad_genes_name_themselves() -> None:
    space = create_supernet("vit_cifar_tiny").space
    archs = space.sample(np.random.default_rng(3), 50)
    assert all(space.parse(str(a)) == a for a in archs)
    assert space.decode(space.encode(archs)) == archs
    assert str(space.min_arch()) == "r=32_embed=48_d=2_heads=1-1-x-x_mlp=2.0-2.0-x-x"
    with pytest.raises(ValueError, match=r"gene heads\[1\].*7.*\[1, 2, 3\]"):
        space.parse("r=32_embed=48_d=2_heads=1-7-x-x_mlp=2.0-2.0-x-x")
    with pytest.raises(ValueError, match="DEPTH 3"):
        space.from_autoformer_dict({"EMBED_DIM": 48, "DEPTH": 3, "NUM_HEADS": [1, 1], "MLP_RATIO": [2, 2, 2]})


@pytest.mark.parametrize("name", ["vit_cifar_tiny", "relpos"])
def test_exported_vit_subnets_run_in_onnx_runtime_with_the_torch_outputs(name: str, tmp_path) -> None:
    from search.export import export_subnets

    model = _small_relpos_vit() if name == "relpos" else create_supernet(name)
    recs = export_subnets(model, [model.space.sample(np.random.default_rng(5))], tmp_path)
    assert all(r["onnx_max_abs_diff"] < 1e-4 for r in recs), recs
    assert {p.suffix for p in tmp_path.iterdir()} == {".onnx", ".pt"}

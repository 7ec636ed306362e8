"""maxrf4u (the reference) reads our datastacks. Needs a separate environment with maxrf4u
(`make compat` builds one and sets MAXRF4U_PYTHON); skipped when that is not set."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.pipeline import steps
from maxrf.pipeline.convert import convert

PYTHON = os.environ.get("MAXRF4U_PYTHON")

READER = """
import json, sys
import numpy as np
from maxrf4u import DataStack
ds = DataStack(sys.argv[1])
out = {name: float(np.asarray(ds.read(name)).astype(float).sum())
       for name in ("maxrf_cube", "maxrf_maxspectrum", "maxrf_sumspectrum", "maxrf_energies",
                    "hotmax_spectra", "hotmax_pixels")}
out["subpeaks"] = [list(map(int, r)) for r in ds.read_list("hotmax_subpeak_idxs_list")]
print(json.dumps(out))
"""


@pytest.mark.skipif(not PYTHON, reason="MAXRF4U_PYTHON not set (run `make compat`)")
def test_maxrf4u_reads_our_datastack(tmp_path):
    generate_scan(tmp_path / "s", DemoSpec(height=24, width=32, seed=8))
    out = tmp_path / "s.datastack"
    convert(tmp_path / "s.raw", out, progress=False)
    steps.calibrate_layers(out, "Rh")
    steps.hotmax_layers(out)
    steps.noise_layers(out)
    steps.subpeak_layers(out)
    res = subprocess.run(
        [PYTHON, "-c", READER, str(out)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    ds = DataStack(out)
    for name, total in theirs.items():
        if name == "subpeaks":
            assert total == [list(r) for r in ds.read_list("hotmax_subpeak_idxs_list")]
        else:
            assert total == pytest.approx(float(ds.read(name).astype(float).sum()), rel=1e-9)
    assert np.isfinite(theirs["maxrf_cube"])

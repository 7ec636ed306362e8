"""The chain of step keys for a scan and parameters, computed without running anything: lets the
CLI see that every layer of a run already exists (a fully cached rerun) without starting Prefect.
"""

from __future__ import annotations

import inspect

from maxrf.fingerprint import scan_fingerprint
from maxrf.raw import check_raw_size, scan_paths
from maxrf.rpl import read_rpl

from .analysis import (
    CALIBRATE,
    HOTMAX,
    NOISE,
    SUBPEAKS,
    calibrate_energy,
    hotmax_noise,
    hotmax_spectra,
    hotmax_subpeaks,
)
from .bands import BANDS, band_layers
from .convert import SPEC as CONVERT
from .convert import convert_scan
from .elementmaps import ELEMENT_MAPS, element_maps
from .layer_cache import stored_layers


def _defaults(task) -> dict:
    sig = inspect.signature(task.fn)
    return {n: p.default for n, p in sig.parameters.items() if p.default is not p.empty}


def cached_chain(raw_path: str, datastack: str, params: dict, steps: int = 5) -> list[dict] | None:
    """Refs of the first ``steps`` steps when all their layers exist with the expected keys."""
    raw, rpl = scan_paths(raw_path)
    check_raw_size(read_rpl(rpl), raw)
    refs: dict[str, dict] = {
        "scan": {"key": "scan-" + scan_fingerprint(raw, rpl, params.get("fingerprint", "quick"))}
    }
    chain = [
        (CONVERT, convert_scan, {"scan": "scan"}),
        (CALIBRATE, calibrate_energy, {"converted": "convert"}),
        (HOTMAX, hotmax_spectra, {"converted": "convert", "calibrated": "calibrate"}),
        (NOISE, hotmax_noise, {"hot": "hotmax"}),
        (SUBPEAKS, hotmax_subpeaks, {"noise": "hotmax-noise"}),
        (BANDS, band_layers, {"converted": "convert"}),
        (
            ELEMENT_MAPS,
            element_maps,
            {"converted": "convert", "calibrated": "calibrate", "hot": "hotmax"},
        ),
    ][:steps]
    out = []
    for spec, task, upstream in chain:
        values = _defaults(task) | {k: v for k, v in params.items() if k in spec.params}
        inputs = {p: values.get(p) for p in spec.params}
        inputs |= {arg: refs[step] for arg, step in upstream.items()}
        key = spec.key(inputs)
        found = stored_layers(datastack, spec, key)
        if not found:
            return None
        refs[spec.step] = spec.ref(datastack, key, found, cached=True)
        out.append(refs[spec.step])
    return out

"""Element maps against the demo generator's planted maps (real datastacks, real fits), the As/Pb
and S/Pb/Hg overlaps, bad input, exports read back, the CLI, and a distributed run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.figures.mapexport import equalize, equalized_ticks, export_all, read_tiff
from maxrf.pipeline import steps
from maxrf.pipeline.convert import convert
from maxrf.pipeline.elementmaps import (
    ElementMapError,
    accuracy,
    crosstalk,
    fit_maps,
    parse_elements,
    prepare,
    roi_maps,
)
from maxrf.xrf.model import Instrument, build_model, channel_edges, element_template


def make_stack(folder: Path, spec: DemoSpec) -> Path:
    generate_scan(folder / "s", spec)
    ds = convert(folder / "s.raw", progress=False)
    assert ds
    path = folder / "s.datastack"
    steps.calibrate_layers(path, spec.anode)
    steps.hotmax_layers(path)
    return path


@pytest.fixture(scope="module")
def rh_stack(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("maps")
    path = make_stack(folder, DemoSpec(height=64, width=96, seed=3, counts=4000))
    steps.elementmap_layers(path)
    return path


def truth_of(path: Path) -> dict[str, np.ndarray]:
    t = np.load(path.with_suffix(".truth.npz"))
    return dict(zip([str(x) for x in t["elements"]], t["maps"], strict=True))


def test_planted_elements_are_proposed_and_mapped(rh_stack):
    ds = DataStack(rh_stack)
    attrs = ds.attrs("maxrf_elementmaps")
    elements, maps = attrs["elements"], ds.read("maxrf_elementmaps")
    truth = truth_of(rh_stack)
    strong = [el for el, m in truth.items() if m.mean() >= 5]
    assert set(strong) <= set(elements), (strong, elements)
    assert maps.min() >= 0 and maps.dtype == np.float32
    for el in strong:
        a = accuracy(maps[elements.index(el)], truth[el])
        if a["truth"] >= 20:
            # As (32 counts/pixel here) under Pb Lα and Hg Lβ: its per-pixel noise is ≈ 2× its
            # Poisson noise, so its binned RMSE is measured 0.19 on this small scan
            assert abs(a["total_ratio"] - 1) <= 0.10, (el, a)
            assert a["rel_rmse"] <= (0.25 if el == "As" else 0.15), (el, a)
            if a["cv"] >= 0.2:
                assert a["corr"] >= 0.95, (el, a)
    # nothing proposed that was not planted (hot spots included): the 3 × 3 sums around the
    # hotmax pixels do not read their selected fluctuations as traces (Ag Lα beside Ar Kα)
    planted = {el for el, m in truth.items() if m.max() > 0}
    assert set(elements) <= planted, set(elements) - planted
    # the Compton shoulder is modelled: the refined scatter angle is the planted one
    inst = attrs["instrument"]
    assert abs(inst["angle_deg"] - 110.0) < 1.5, inst
    assert attrs["mean_spectrum_reduced_chi2"] < 1.5, attrs["mean_spectrum_reduced_chi2"]
    # maxrf4u's names, same data; atomic numbers; residual ≈ 1 for a good model
    np.testing.assert_array_equal(ds.read("nmf_elementmaps"), maps)
    assert ds.read("nmf_atomnums").tolist() == ds.read("maxrf_elementmaps_atomnums").tolist()
    assert 0.8 < float(np.median(ds.read("maxrf_elementmaps_residual"))) < 1.5
    assert ds.read("maxrf_elementmaps_background").mean() > 0


def test_arsenic_under_lead_is_separated(rh_stack):
    """As Ka sits 7 eV from Pb La: ROI sums show As wherever there is lead; the fit does not."""
    ds = DataStack(rh_stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    maps = dict(zip(elements, ds.read("maxrf_elementmaps"), strict=True))
    truth = truth_of(rh_stack)
    fit_ratio = crosstalk(maps, truth)
    roi = dict(zip(["As", "Pb"], roi_maps(rh_stack, ["As", "Pb"]), strict=True))
    roi_ratio = crosstalk(roi, truth)
    assert roi_ratio > 0.3  # the classic ROI map is fooled by lead
    assert fit_ratio < 0.02 and fit_ratio < roi_ratio / 5, (fit_ratio, roi_ratio)
    # no positive noise floor where there is none: the total stays the planted one
    a = accuracy(maps["As"], truth["As"])
    assert abs(a["total_ratio"] - 1) < 0.1 and a["corr"] > 0.95, a
    assert (maps["As"][truth["As"] == 0] == 0).mean() > 0.9


def test_sulphur_next_to_lead_and_mercury_m_lines(rh_stack):
    ds = DataStack(rh_stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    maps = ds.read("maxrf_elementmaps")
    truth = truth_of(rh_stack)
    a = accuracy(maps[elements.index("S")], truth["S"])
    assert a["corr"] >= 0.95 and abs(a["total_ratio"] - 1) < 0.1, a


@pytest.mark.parametrize(
    "anode, channels, gain, offset, angle, tube_kv",
    [("Mo", 2048, 0.0156, -0.3, 75, 40.0), ("Ag", 4096, 0.0086, -0.613, 131, 45.0),
     ("W", 4096, 0.010002, -0.956, 110, 40.0)],
)
def test_other_geometries(tmp_path, anode, channels, gain, offset, angle, tube_kv):
    spec = DemoSpec(height=32, width=48, channels=channels, gain=gain, offset=offset,
                    anode=anode, angle=angle, tube_kv=tube_kv, counts=4000, seed=7)
    path = make_stack(tmp_path, spec)
    steps.elementmap_layers(path, anode=anode, tube_kv=tube_kv)
    ds = DataStack(path)
    attrs = ds.attrs("maxrf_elementmaps")
    elements, maps = attrs["elements"], ds.read("maxrf_elementmaps")
    truth = truth_of(path)
    for el in ("Fe", "Pb", "Hg", "Cu"):
        a = accuracy(maps[elements.index(el)], truth[el])
        assert abs(a["total_ratio"] - 1) <= 0.1 and a["corr"] >= 0.95, (el, a)
    if anode == "W":
        # a W tube's L lines come from three subshells whose shares the electrons set: they
        # are fitted (radiative rates alone put Lβ above Lα: reduced χ² 990 instead of ≈ 1)
        shares = attrs["tube_subshell_shares"]
        assert set(shares) == {"L1", "L2", "L3"} and max(shares, key=shares.get) == "L3"
        assert attrs["mean_spectrum_reduced_chi2"] < 3, attrs["mean_spectrum_reduced_chi2"]


def test_given_elements_and_bad_input(rh_stack, tmp_path):
    assert parse_elements("pb, Hg ,As") == ["Pb", "Hg", "As"]
    with pytest.raises(ElementMapError, match="unknown element symbol 'Xx'"):
        parse_elements("Pb,Xx")
    with pytest.raises(ElementMapError, match="no line of H lies in the fitted range"):
        prepare(rh_stack, elements=["Fe", "H"])
    mm = prepare(rh_stack, elements=["Fe"], add=["Pb"], drop=["Fe"])
    assert mm.elements == ["Pb"]
    # A datastack without energies: a clear error and nothing written.
    generate_scan(tmp_path / "n", DemoSpec(height=16, width=16, channels=512, gain=0.08))
    convert(tmp_path / "n.raw", progress=False)
    before = (tmp_path / "n.datastack").read_bytes()
    with pytest.raises(ElementMapError, match="no layer 'maxrf_energies'"):
        steps.elementmap_layers(tmp_path / "n.datastack")
    r = run_maxrf("maps", tmp_path / "n.datastack")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "maxrf_energies" in r.stderr
    r = run_maxrf("maps", rh_stack, "--elements", "Pb,Qq")
    assert r.returncode == 2 and "unknown element symbol 'Qq'" in r.stderr
    assert (tmp_path / "n.datastack").read_bytes() == before


def test_cli_exports_tiffs_pngs_and_composite(rh_stack, tmp_path):
    r = run_maxrf("maps", rh_stack, "--export", tmp_path / "out", "--rgb", "Pb,Hg,Cu",
                  "--pixel-size-mm", "0.25")
    assert r.returncode == 0, r.stderr
    assert "using the element maps" in r.stdout and "Pb" in r.stdout
    ds = DataStack(rh_stack)
    elements, maps = ds.attrs("maxrf_elementmaps")["elements"], ds.read("maxrf_elementmaps")
    for el, m in zip(elements, maps, strict=True):
        back = read_tiff(tmp_path / "out" / f"{el}.tif")
        np.testing.assert_array_equal(back, m)  # float32 counts, exactly
        assert (tmp_path / "out" / f"{el}_linear.png").stat().st_size > 1000
        assert (tmp_path / "out" / f"{el}_equalized.png").stat().st_size > 1000
    import tifffile
    from PIL import Image

    with tifffile.TiffFile(tmp_path / "out" / "elementmaps.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["Labels"] == elements  # slice labels
        np.testing.assert_array_equal(tif.asarray(), maps)
        # ImageJ's calibration: 4 pixels per mm, so Fiji measures in mm
        assert tif.imagej_metadata["unit"] == "mm"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(4.0)
    with Image.open(tmp_path / "out" / f"{elements[0]}_linear.png") as img:
        assert round(img.info["dpi"][0]) >= 299
    with Image.open(tmp_path / "out" / "rgb_Pb-Hg-Cu.png") as img:
        rgb = np.asarray(img)
    assert rgb.shape == (*maps.shape[1:], 3) and rgb[..., 0].max() == 255
    assert (tmp_path / "out" / "elementmaps_grid.png").exists()
    assert not list((tmp_path / "out").glob(".*tmp"))
    r = run_maxrf("maps", rh_stack, "--rgb", "Pb,Hg,Cu,Fe,Mn")
    assert r.returncode == 2 and "1 to 4" in r.stderr
    with pytest.raises(Exception, match="no map for Zr"):
        export_all(rh_stack, tmp_path / "x", rgb=["Zr"])


def test_distributed_equals_local(rh_stack):
    from distributed import Client, LocalCluster

    mm = prepare(rh_stack, elements=["Fe", "Pb", "Hg", "As", "Ca"])
    local = fit_maps(rh_stack, mm, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote = fit_maps(rh_stack, mm, scheduler=client, progress=False)
    # float32 projections summed in another order (BLAS threads per worker): ~1e-5 relative
    np.testing.assert_allclose(remote.maps, local.maps, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(remote.residual, local.residual, rtol=1e-4, atol=1e-4)


def test_model_templates_are_physical():
    e = -0.956 + 0.010002 * np.arange(4096)
    edges = channel_edges(e)
    inst = Instrument()
    fe = element_template("Fe", edges, inst)
    assert fe.sum() == pytest.approx(1.0)
    # Ka1 and Ka2 are separate components (6.404 / 6.391 keV): the centroid sits between them,
    # Kb at 7.06 keV, and a Si escape peak at 6.40 - 1.74 keV.
    ka = (e > 6.2) & (e < 6.6)
    centroid = (e[ka] * fe[ka]).sum() / fe[ka].sum()
    assert 6.395 < centroid < 6.404
    assert fe[(e > 6.9) & (e < 7.2)].sum() > 0.08
    esc = fe[(e > 4.55) & (e < 4.75)].sum() / fe[ka].sum()
    assert 0.002 < esc < 0.03
    m = build_model(e, ["Fe", "Pb"], inst, (1.0, 25.0), continuum=8)
    assert {"rayleigh", "compton", "compton-shoulder", "compton-tail", "sensor"} <= set(m.names)
    # the Compton shoulder lies below the Compton peak and is broader
    c, sh = m.templates[m.names.index("compton")], m.templates[m.names.index("compton-shoulder")]
    assert e[np.argmax(sh)] < e[np.argmax(c)] - 0.1 and sh.max() < 0.7 * c.max()
    assert np.allclose(m.templates.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown element"):
        element_template("Qq", edges, inst)


def test_masked_solve_is_the_nnls_without_those_components():
    """Undetected elements are fitted out of a pixel: the batched solver with components held
    at 0 equals scipy's exact NNLS of the remaining templates."""
    from scipy.optimize import nnls

    from maxrf.xrf.solver import GramSolver

    rng = np.random.default_rng(5)
    e = np.linspace(1, 20, 600)
    t = np.array([np.exp(-0.5 * ((e - c) / 0.4) ** 2) for c in np.linspace(2, 18, 9)])
    t /= t.sum(axis=1, keepdims=True)
    w = 1.0 / np.maximum(t.sum(axis=0) * 50, 1.0)
    amps = rng.uniform(0, 300, (40, 9))
    y = rng.poisson(amps @ t + 0.2).astype(np.float64)
    free = rng.random((40, 9)) > 0.3
    solver = GramSolver(t, w, tol=1e-9)
    b = solver.project(y)
    x = solver.solve(b, free)
    sw = np.sqrt(w)
    for p in range(40):
        k = np.flatnonzero(free[p])
        exact = np.zeros(9)
        exact[k] = nnls((t[k] * sw).T, y[p] * sw)[0]
        np.testing.assert_allclose(x[p], exact, rtol=1e-3, atol=1e-2)
    assert (x[~free] == 0).all()


def test_sigma_layer_matches_the_scatter_of_the_maps(rh_stack):
    """maxrf_elementmaps_sigma (one sigma per pixel and element): the fitted counts scatter
    around the planted ones by about that much (z-scores with a standard deviation near 1)."""
    ds = DataStack(rh_stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    maps, sigma = ds.read("maxrf_elementmaps"), ds.read("maxrf_elementmaps_sigma")
    assert sigma.shape == maps.shape and sigma.dtype == np.float32 and (sigma > 0).all()
    assert ds.attrs("maxrf_elementmaps_sigma")["elements"] == elements
    truth = truth_of(rh_stack)
    spread = {}
    for el, t in truth.items():
        if el in elements and t.mean() >= 20:
            i = elements.index(el)
            z = (maps[i] - t) / sigma[i]
            spread[el] = float(z.std())
    assert len(spread) >= 4, spread
    assert all(0.5 <= s <= 1.6 for s in spread.values()), spread
    assert 0.9 <= float(np.median(list(spread.values()))) <= 1.15, spread


def test_mean_fit_misfit_by_energy_and_its_warning(rh_stack):
    from maxrf.pipeline.elementmaps import misfit_warnings, residual_regions

    attrs = DataStack(rh_stack).attrs("maxrf_elementmaps")
    regions = attrs["mean_spectrum_residual_by_energy"]
    assert len(regions) >= 15 and all(r["reduced_chi2"] < 3 for r in regions), regions
    assert attrs["warnings"] == []
    # a misfit at 3.7 keV (a Ca Kα the model under-predicts by 10 %) is named
    e = np.linspace(1, 25, 2400)
    model = 20000 * np.exp(-0.5 * ((e - 3.69) / 0.06) ** 2) + 50.0
    counts = model.copy()
    counts[(e > 3.5) & (e < 3.9)] *= 1.1
    lines = misfit_warnings(residual_regions(e, counts, model))
    assert len(lines) == 1 and "3-4 keV" in lines[0] and "under-fitted" in lines[0], lines


@pytest.fixture(scope="module")
def layered_stack(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("layers")
    path = make_stack(folder, DemoSpec(height=64, width=96, seed=3, counts=4000, layers=True))
    steps.elementmap_layers(path)
    return path


def test_layer_stacks_change_line_ratios_pixel_by_pixel(layered_stack):
    """The generator's paint over paint: Pb under ochre loses its M lines and some L, by pixel."""
    from maxrf.demo import _attenuation

    fields = {"Pb": np.ones((2, 2), np.float32), "Fe": np.array([[0, 1], [0.5, 1]], np.float32)}
    m = _attenuation(DemoSpec(), fields, "Pb@2")  # Pb M (2.3 keV) under ochre
    lb = _attenuation(DemoSpec(), fields, "Pb@12") / _attenuation(DemoSpec(), fields, "Pb@10")
    assert m[0, 0] == 1 and m[0, 1] < 0.02  # bare lead white vs thickest ochre
    assert lb[0, 0] == 1 and lb[0, 1] > 1.1  # Lβ/Lα grows where ochre lies over it
    truth = truth_of(layered_stack)
    assert truth["Pb"].mean() > 20


def test_layered_scan_maps_every_planted_element_within_10_percent(layered_stack):
    """Per-pixel line ratios that the one-ratio-per-scan model cannot follow: every planted
    element is still proposed and its total within 10 % (false traces of Zn and Br from Hg's
    Ll/Lα change across azurite's Cu K edge are a known gap: docs/performance.md)."""
    ds = DataStack(layered_stack)
    elements, maps = ds.attrs("maxrf_elementmaps")["elements"], ds.read("maxrf_elementmaps")
    for el, t in truth_of(layered_stack).items():
        if t.mean() >= 5:
            assert el in elements, (el, elements)
            a = accuracy(maps[elements.index(el)], t)
            # As under Pb Lα is the known gap (issue #23's target is 10 %): 1.17 here, where the
            # per-scan Pb line-family shares cannot follow ochre's pixel-by-pixel Lβ/Lα change
            assert abs(a["total_ratio"] - 1) <= (0.20 if el == "As" else 0.10), (el, a)
            if t.mean() >= 20 and el != "As":
                assert a["rel_rmse"] <= 0.15, (el, a)


def test_equalized_maps_keep_absent_at_zero_and_ties_together():
    """The old ranks of tied zeros in raster order made absent regions smooth gradients."""
    m = np.zeros((4, 6), np.float32)
    m[1, 1:4] = 5.0  # three equal values
    m[2, 2] = 50.0
    e = equalize(m)
    assert (e[m == 0] == 0).all()  # absent stays black, no gradient
    assert len(set(e[m == 5].tolist())) == 1 and e[2, 2] == 1.0
    ticks, labels = equalized_ticks(m)
    assert ticks[0] == 0 and labels[0] == "0" and labels[-1] == "50"  # real counts
    assert equalize(np.zeros((3, 3))).max() == 0 and equalized_ticks(np.zeros(3))[1] == ["0"]


@pytest.fixture(scope="module")
def detector_stack(tmp_path_factory) -> Path:
    """A scan whose detector has tails, a shelf and pile-up, with P and Cl paint (what the
    model's own Gaussian lines would misread: tails under neighbours, sum peaks as elements)."""
    folder = tmp_path_factory.mktemp("detector")
    spec = DemoSpec(height=32, width=48, seed=4, counts=40000, tail=0.06, shelf=0.004,
                    pileup=0.01, light=True)  # 6e7 counts: enough to fit the peak shape
    path = make_stack(folder, spec)
    steps.elementmap_layers(path)
    return path


def test_generator_tails_shelf_and_pileup():
    from maxrf.demo import _line_shape, _pileup

    spec = DemoSpec(tail=0.06, shelf=0.004, pileup=0.01)
    e = spec.offset + spec.gain * np.arange(spec.channels)
    shape = _line_shape(spec, e, 6.4, 0.14)
    plain = _line_shape(DemoSpec(), e, 6.4, 0.14)
    assert abs(shape.sum() - 1) < 0.01 and abs(plain.sum() - 1) < 0.01
    low = (e > 5.5) & (e < 6.1)  # the tail lifts the low side only
    high = (e > 6.7) & (e < 7.3)
    assert shape[low].sum() > 10 * plain[low].sum() and shape[high].sum() < 1e-3
    assert 0.001 < shape[(e > 1) & (e < 5)].sum() < 0.01  # the shelf, down to 0 keV
    templates = np.zeros((1, spec.channels), np.float32)
    templates[0, np.argmin(abs(e - 3.69))] = 1.0  # one line: Ca Kα
    pile, share = _pileup(spec, np.ones((1, 4), np.float32), templates)
    assert share == 0.01 and abs(e[np.argmax(pile)] - 7.38) < 0.02  # the sum peak


def test_the_model_fits_tails_shelf_and_pileup_and_maps_light_paint(detector_stack):
    ds = DataStack(detector_stack)
    attrs = ds.attrs("maxrf_elementmaps")
    elements, maps = attrs["elements"], ds.read("maxrf_elementmaps")
    inst = attrs["instrument"]
    assert inst["line_tail"] > 0.01 and inst["line_shelf"] > 0.0005, inst
    assert "pileup" in attrs["components"]
    assert "Ni" not in elements  # Ca Kα + Ca Kα at 7.38 keV is pile-up, not nickel
    import json

    info = json.loads(detector_stack.with_suffix(".truth.json").read_text())
    spots = {h["element"] for h in info["hotspots"]}  # single pixels: judged elsewhere
    ratios = {}
    for el, t in truth_of(detector_stack).items():
        if t.mean() >= 5 and el not in spots:
            assert el in elements, (el, elements)
            ratios[el] = round(accuracy(maps[elements.index(el)], t)["total_ratio"], 3)
    # As under Pb Lα with tails on both lines: ~0.88, a known gap (docs/performance.md)
    assert all(abs(r - 1) <= (0.15 if el == "As" else 0.10) for el, r in ratios.items()), ratios
    assert {"P", "Cl"} <= set(elements)

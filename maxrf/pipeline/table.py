"""The processing chain in one table: every step's name, code version, layers, parameters (with
defaults and descriptions) and upstream steps.

Tasks, flows, the CLI's options, the deployment form (the flows' docstrings are made from
:data:`PARAMS`) and the cached-chain check all read it; adding a step is one entry in
:data:`STEPS`. A step's cache key is made from its parameters, its code version and its upstream
steps' keys (the first step's upstream is the scan's fingerprint); a missing upstream key is an
error, never silently left out. Pure Python: no Prefect, no heavy imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxrf.errors import MaxrfError
from maxrf.io.fingerprint import file_fingerprint, step_key
from maxrf.xrf.defaults import ANODES, DEFAULT_ANODE, DEFAULT_SIGMA, DEFAULT_TUBE_KV

FINGERPRINTS = ("quick", "full")
DEFAULT_PRECISION_BITS = 13  # see datastack.layers.PRECISION_BITS and the README


@dataclass(frozen=True)
class Param:
    """A parameter of the chain, defined once: its default, what it means (units included), its
    kind and bounds (the checks, the CLI option, the run form and the watcher derive from it)."""

    name: str
    default: Any
    description: str
    kind: str = "str"  # float, int, bool, str, path, file, choice, anode, energies, elements
    bounds: tuple[float, float] | None = None  # inclusive; None: any value of the kind
    choices: tuple[str, ...] = ()
    optional: bool = False  # None ("empty") is a value of its own (automatic, none, lossless)
    cli: str | None = None  # the option's name (default --the-name); "" for no option
    metavar: str | None = None
    unit: str = ""

    @property
    def flag(self) -> str:
        return self.cli or "--" + self.name.replace("_", "-")


def file_key(path: str) -> str:
    """An input file's name and content fingerprint, for a cache key (a missing file: its
    name alone; the step then says it is missing)."""
    p = Path(path)
    return f"{p.name}:{file_fingerprint(p)}" if p.is_file() else str(path)


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("raw_path", None, "The scan's .raw file (its .rpl header beside it).", "path", cli=""),
    Param("output", None,
          "The datastack file to write (default: SCAN.datastack beside the .raw).", "path",
          optional=True, cli="--output"),
    Param("sigma", DEFAULT_SIGMA, "Gaussian smoothing of the cube, in channels (maxrf4u uses 7).",
          "float", (0.0, 200.0), unit="channels"),
    Param("flip_horizontal", False, "Mirror the image left-right (scan direction).", "bool"),
    Param("flip_vertical", False, "Mirror the image top-bottom.", "bool"),
    Param("precision_bits", DEFAULT_PRECISION_BITS,
          "Bits kept per smoothed spectrum (1-24; error <= 2**-(N+1) of its peak); empty for "
          "an exact (lossless, larger) cube.", "int", (1, 24), optional=True, metavar="N"),
    Param("fingerprint", "quick",
          "How the .raw is identified for caching: quick (size, time, 17 sampled MiB) or full "
          "(every byte; for files edited in place).", "choice", choices=FINGERPRINTS),
    Param("dask_address", None,
          "A dask.distributed scheduler (host:port) to run on; empty for local threads.",
          optional=True, cli="--dask", metavar="ADDRESS"),
    Param("anode", DEFAULT_ANODE,
          "The X-ray tube's anode (Rh, Mo, Ag, W, Cr, Cu), or a monochromatic beam's energy in "
          "keV.", "anode", choices=ANODES),
    Param("energies", None,
          "Manual calibration: keV of the first and the last channel; empty: automatic.",
          "energies", optional=True, metavar=("START", "STOP")),
    Param("use_header", True, "Use the header's energy calibration when it has one.", "bool"),
    Param("prominence", None,
          "Minimum prominence (counts) of a max-spectrum peak for hotmax; empty: chosen from "
          "the noise.", "float", (1e-9, float("inf")), optional=True, unit="counts"),
    Param("radius", 40, "Rolling-ball radius of the hotmax baselines, in channels.", "int",
          (1, 10_000), unit="channels"),
    Param("tube_kv", None,
          "The tube's voltage in kV (sets which lines are excited and how strongly); empty: the "
          f"one the scan file records (Bruker .bcf/.spx), else {DEFAULT_TUBE_KV:g} kV.", "float",
          optional=True, unit="kV"),  # its range is the physics' (xrf.lines.tube_series)
    Param("elements", None,
          'Elements to map, e.g. ["Pb", "Hg", "As"]; empty: proposed from the data.',
          "elements", optional=True, metavar="LIST"),
    Param("add_elements", None, "Elements to map besides the proposed ones.", "elements",
          optional=True, metavar="LIST"),
    Param("drop_elements", None, "Elements never to map.", "elements", optional=True,
          metavar="LIST"),
    Param("materials", None,
          "How many materials (paints) the materials map tells apart; empty: chosen from the "
          "data.", "int", (1, 64), optional=True, metavar="K"),
    Param("photo", None,
          "A photograph of the painting (PNG, JPEG, TIFF): the scan is registered to it "
          "(maxrf_registration), automatically unless control points are given.", "file",
          optional=True, metavar="IMAGE"),
    Param("photo_points", None,
          "Control points for the registration: a CSV of scan_col, scan_row, photo_x, photo_y; "
          "empty: found automatically.", "file", optional=True, metavar="CSV"),
    Param("refine_points", False,
          "Refine the transform the control points give by matching the maps to the photo "
          "(the points then only need to be roughly right).", "bool"),
    Param("registration_model", None,
          "The scan-to-photo transform: similarity, affine or homography (a photo taken at an "
          "angle); empty: affine.", "choice",
          choices=("similarity", "affine", "homography"), optional=True),
    Param("pulser_hz", None,
          "The detector's zero-peak pulser rate in Hz (Bruker M6: 10000); gives each pixel's "
          "live time (maxrf_livetime). Empty: no pulser, no live time.", "float",
          (1e-9, float("inf")), optional=True, metavar="HZ", unit="Hz"),
    Param("dwell_ms", None,
          "The time per pixel in ms (with a pulser: the dead-time map); empty: unknown.",
          "float", (1e-9, float("inf")), optional=True, metavar="MS", unit="ms"),
    Param("plots", True, "Draw the PNG plots beside the datastack.", "bool"),
    Param("maps", True, "Fit the element maps (the last step).", "bool"),
    Param("folder", None, "The folder the scanner writes .raw/.rpl pairs into.", "path", cli=""),
    Param("pattern", "*.raw", "Which files are scans (a glob, e.g. *.raw)."),
    Param("settle_s", 10.0,
          "Seconds a scan's files must stay unchanged before it counts as complete.", "float",
          (0.0, float("inf")), cli="--settle", unit="s"),
    Param("output_folder", None, "Where datastacks go (default: beside each scan).", "path",
          optional=True),
)}  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One layer-writing step of the chain."""

    name: str
    version: str  # bump when the numbers the step writes change
    layers: tuple[str, ...]
    params: tuple[str, ...] = ()  # what its key depends on
    upstream: tuple[str, ...] = ()  # steps (or "scan") whose keys its key depends on
    description: str = ""

    def key(self, params: Mapping[str, Any], upstream: Mapping[str, str]) -> str:
        """The step's cache key from its parameters (defaults from the table) and its upstream
        steps' keys; an upstream key that is missing raises."""
        missing = [u for u in self.upstream if not upstream.get(u)]
        if missing:
            raise MaxrfError(f"step {self.name}: no key for its upstream {', '.join(missing)}")
        values = {p: params.get(p, PARAMS[p].default) for p in self.params}
        for p, v in values.items():  # an input file counts by its content, not its name
            if PARAMS[p].kind == "file" and v:
                values[p] = file_key(v)
        if "tube_kv" in values and values["tube_kv"] is None:  # not resolved from a scan file
            values["tube_kv"] = DEFAULT_TUBE_KV  # (runner.with_file_defaults): the default's key
        return step_key(self.name, self.version, values, [upstream[u] for u in self.upstream])


STEPS: tuple[Step, ...] = (
    Step("convert", "3",
         ("maxrf_raw", "maxrf_cube", "maxrf_maxspectrum", "maxrf_sumspectrum",
          "maxrf_maxpixels", "maxrf_rawmeanspectrum"),
         ("sigma", "flip_horizontal", "flip_vertical", "precision_bits"), ("scan",),
         "raw counts, smoothed cube, max/mean spectra, max pixels"),
    Step("calibrate", "5", ("maxrf_energies", "compton_peak_energy"),
         ("anode", "energies", "use_header", "tube_kv"), ("convert",), "energy axis, Compton peak"),
    Step("hotmax", "1",
         ("hotmax_pixels", "hotmax_spots", "hotmax_spectra", "hotmax_peak_idxs_list",
          "hotmax_peak_table"),
         ("prominence",), ("convert", "calibrate"), "hotmax pixels, spectra, peak table"),
    Step("hotmax-noise", "1", ("hotmax_baselines", "hotmax_noiselines"), ("radius",),
         ("hotmax",), "rolling-ball baselines, Poisson noise lines"),
    Step("subpeaks", "1", ("hotmax_subpeak_idxs_list",), (), ("hotmax-noise",),
         "sub-peaks above the noise lines"),
    Step("bands", "4", ("maxrf_bandcumsum", "maxrf_blocksums"), (),
         ("convert",), "the viewer's band layers"),
    Step("livetime", "2", ("maxrf_livetime", "maxrf_deadtime"), ("pulser_hz", "dwell_ms"),
         ("calibrate", "bands"), "live time per pixel from the zero-peak pulser"),
    Step("element-maps", "8",
         ("maxrf_elementmaps", "maxrf_elementmaps_atomnums", "maxrf_elementmaps_residual",
          "maxrf_elementmaps_sigma",
          "maxrf_elementmaps_background", "maxrf_elementmaps_model", "nmf_elementmaps",
          "nmf_atomnums"),
         ("anode", "tube_kv", "elements", "add_elements", "drop_elements"),
         ("convert", "calibrate", "hotmax"), "fitted counts per pixel of every element"),
    Step("materials", "2",
         ("maxrf_materials", "maxrf_materials_spectra", "maxrf_materials_composition"),
         ("materials",), ("element-maps",), "which pixels share a paint, and its spectrum"),
    Step("register", "1", ("maxrf_registration",),
         ("photo", "photo_points", "refine_points", "registration_model"), ("element-maps",),
         "the scan registered to a photograph of the painting"),
)  # fmt: skip
_BY_NAME = {s.name: s for s in STEPS}


def _in_table_order(names: Iterable[str]) -> tuple[str, ...]:
    wanted = set(names)
    return tuple(n for n in PARAMS if n in wanted)


RUN = ("fingerprint", "dask_address", "plots", "maps")  # how a run goes; in no step's key
# every parameter of processing one scan: what process-scan, a watched folder and the CLI take
PROCESSING = _in_table_order([p for s in STEPS for p in s.params] + list(RUN))
CONVERTING = _in_table_order([*_BY_NAME["convert"].params, "fingerprint", "dask_address"])


def step(name: str) -> Step:
    """The step called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise MaxrfError(f"no step {name!r} (steps: {', '.join(_BY_NAME)})") from None


def chain(maps: bool = True, livetime: bool = False, photo: bool = False) -> tuple[Step, ...]:
    """The steps ``process_scan`` runs, in order (the element maps unless ``maps`` is False, the
    live time only with a pulser, the registration only with a photo and the maps)."""
    skip = (({"element-maps", "materials", "register"} if not maps else set())
            | ({"livetime"} if not livetime else set())
            | ({"register"} if not photo else set()))
    return tuple(s for s in STEPS if s.name not in skip)


def default(name: str) -> Any:
    """A parameter's default."""
    return PARAMS[name].default


def args_doc(names: Iterable[str], indent: str = "    ") -> str:
    """A Google-style ``Args:`` section for these parameters (Prefect shows it in the run form)."""
    lines = [f"{indent}Args:"]
    for n in names:
        lines.append(f"{indent}    {n}: {PARAMS[n].description}")
    return "\n".join(lines) + "\n"


def documented(summary: str, names: Iterable[str]):
    """Give a flow function a docstring made of ``summary`` and its parameters' descriptions
    (apply it below ``@flow``)."""

    def wrap(fn):
        fn.__doc__ = f"{summary}\n\n{args_doc(names)}"
        return fn

    return wrap


def chain_keys(scan_key: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Every step's key for a scan (its fingerprint key) and a run's parameters."""
    keys = {"scan": scan_key}
    for s in STEPS:
        keys[s.name] = s.key(params, keys)
    return keys

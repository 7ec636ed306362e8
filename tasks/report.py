"""Task: publish what a run produced as Prefect artifacts (datastack tree, steps, timings)."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from maxrf.datastack import DataStack
from maxrf.pipeline.runner import in_this_run
from maxrf.viewer import view_command


def artifact_key(datastack: str, what: str) -> str:
    """A key per datastack file (its name plus a short hash of its resolved path: two scans
    named alike in different folders keep their own artifacts); lowercase, digits, dashes."""
    import hashlib

    stem = re.sub(r"[^a-z0-9]+", "-", Path(datastack).stem.lower()).strip("-") or "scan"
    where = hashlib.sha1(str(Path(datastack).resolve()).encode()).hexdigest()[:6]
    return f"{what}-{stem[:80]}-{where}"[:100]  # what it is first: the card reads as a title


def _fitted_lines(energy: float, fitted: list[str], cal: dict) -> str:
    """The lines of the mapped elements within one detector resolution of ``energy`` (the
    strongest first), or "" when none is: what the fit says the peak is."""
    from maxrf.xrf.lines import line_components, siegbahn
    from maxrf.xrf.model import Instrument

    kv = float(cal.get("tube_kv") or (cal.get("refinement") or {}).get("instrument", {})
               .get("tube_kv") or 50.0)
    anode = cal.get("anode", "Rh")
    inst = Instrument(anode=str(anode), tube_kv=kv)
    width = float(inst.fwhm_kev(max(energy, 1.0)))
    near = []
    for el in fitted:
        try:
            lines_ = line_components(el, str(anode), kv)
        except (ValueError, TypeError):
            continue
        top = max((x.intensity for x in lines_), default=0.0)
        for x in lines_:
            if abs(x.energy_kev - energy) <= width and x.intensity >= 0.05 * top:
                near.append((x.intensity / top, f"{el} {siegbahn(x.name)}"))
    near.sort(reverse=True)
    return ", ".join(dict.fromkeys(name for _w, name in near[:3]))


def _peak_row(row: dict, candidates: str, cal: dict, fitted: list[str] | None = None) -> dict:
    """A peak-table row as a person reads it: keV to the eV, the pixel, and what the peak is:
    the calibration's landmarks (sensor noise, the anode's Rayleigh, Compton), else the lines
    of the mapped elements there, else the candidate lines by energy alone."""
    energy = row["energy_kev"]
    label = (_fitted_lines(energy, fitted, cal) if fitted else "") or candidates
    landmarks = {m["name"]: m["energy_kev"] for m in cal.get("landmarks", [])}
    for name, e in landmarks.items():
        if ("sensor" in name or "Rayleigh" in name) and abs(e - energy) < 0.1:
            label = name
    if cal.get("compton_kev") and abs(cal["compton_kev"] - energy) < 0.3:
        label = f"Compton ({cal.get('scatter_angle_deg') or 0:.0f}°)"
    return {
        "energy_kev": round(energy, 3),
        "channel": int(row["channel"]),
        "height": round(row["height"], 1),
        "pixel": f"({int(row['row'])}, {int(row['col'])})",
        "lines": label,
    }


def layer_table(ds: DataStack) -> list[dict]:
    rows = []
    for name in ds.layers:
        arr = ds.array(name, latest=False)
        meta = arr.attrs.get("maxrf", {})
        rows.append(
            {
                "layer": name,
                "shape": "x".join(map(str, arr.shape)),
                "dtype": str(arr.dtype),
                "step": meta.get("step", ""),
                "duration_s": meta.get("duration_s", ""),
                "cache_key": meta.get("cache_key", ""),
            }
        )
    return rows


@task(name="report", task_run_name="report")
def publish_report(datastack: str, steps: list[dict], plots: list[str] | None = None) -> dict:
    """Artifacts: the datastack tree, steps (cached or computed) with timings, the calibration and
    the hotmax peak table; returns a summary."""
    ds = DataStack(datastack)
    extra_markdown = _elementmaps_markdown(ds) + _calibration_markdown(ds)
    if "hotmax_peak_table" in ds:
        table = ds.array("hotmax_peak_table")
        cols, cands = table.attrs["columns"], table.attrs["candidates"]
        cal = ds.attrs("maxrf_energies").get("calibration", {}) if "maxrf_energies" in ds else {}
        fitted = (list(ds.attrs("maxrf_elementmaps")["elements"])
                  if "maxrf_elementmaps" in ds else None)
        rows = [
            _peak_row(dict(zip(cols, map(float, r), strict=True)), c, cal, fitted)
            for r, c in zip(table[...], cands, strict=True)
        ]
        create_table_artifact(
            rows,
            key=artifact_key(datastack, "hotmax-peaks"),
            description="Peaks of the max spectrum and their hotmax pixels",
        )
    tree = ds.tree()
    create_table_artifact(
        layer_table(ds), key=artifact_key(datastack, "layers"), description=f"Layers of {datastack}"
    )
    step_rows = [
        {
            "step": s["step"],
            "cached": s.get("cached", False),
            **({"made_by": s["made_by"]} if s.get("made_by") else {}),
            "key": s["key"],
            "layers": ", ".join(s["layers"].values()),
            "duration_s": _duration(ds, s),
        }
        for s in in_this_run(steps)
    ]
    create_table_artifact(
        step_rows,
        key=artifact_key(datastack, "steps"),
        description="Steps of this run (cached = reused from the datastack)",
    )
    view = view_command(datastack)
    md = (  # what a scientist reads first: the elements, then the axis, then the file
        f"# {Path(datastack).name}\n\n**Look at it:** `{view}` (opens the viewer at "
        f"http://127.0.0.1:8765/: element maps, click a pixel for its spectrum, drag an energy "
        f"band)\n{extra_markdown}\n\n## Layers\n\n```\n{tree}\n```\n"
    )
    create_markdown_artifact(
        md, key=artifact_key(datastack, "summary"), description="maxrf datastack summary"
    )
    return {
        "datastack": str(datastack),
        "tree": tree,
        "steps": step_rows,
        "layers": ds.layers,
        "plots": list(plots or []),
        "view": view,
        "warnings": _warnings(ds),
    }


def _duration(ds: DataStack, step: dict) -> float | str:
    first = next(iter(step["layers"].values()), None)
    return ds.attrs(first, latest=False).get("maxrf", {}).get("duration_s", "") if first else ""


def _calibration_markdown(ds: DataStack) -> str:
    if "maxrf_energies" not in ds:
        return ""
    cal = ds.attrs("maxrf_energies").get("calibration", {})
    lines = [
        "",
        "## Energy calibration",
        "",
        f"- axis: {cal.get('offset_kev', 0):+.5f} keV + {cal.get('gain_kev', 0):.7f} keV/ch"
        f" + {cal.get('quadratic_kev', 0):.3g} keV/ch²",
        f"- method: {cal.get('method')}; rms residual {cal.get('rms_residual_ev', 0):.1f} eV",
    ]
    if cal.get("compton_kev"):
        lines.append(
            f"- Compton peak {cal['compton_kev']:.3f} keV, scatter angle "
            f"{cal['scatter_angle_deg']:.1f}°"
        )
    ref = cal.get("refinement")
    if ref:
        lines.append(
            f"- whole-spectrum refinement: reduced χ² {ref['landmark_axis_reduced_chi2']} "
            f"(landmark axis) → {ref['refined_axis_reduced_chi2']} (refined); kept: {ref['kept']}"
        )
    if cal.get("noise_fwhm_kev"):
        lines.append(
            f"- detector: noise {1000 * cal['noise_fwhm_kev']:.1f} eV FWHM, Fano {cal['fano']:.3f}"
        )
    if cal.get("supported_kev"):
        lo, hi = cal["supported_kev"]
        lines.append(f"- supported by lines from {lo:.2f} to {hi:.2f} keV")
    lines += [f"- **warning**: {w}" for w in cal.get("warnings", [])]
    lines += ["", "| landmark | keV | channel | residual (eV) |", "|---|---|---|---|"]
    lines += [
        f"| {m['name']} | {m['energy_kev']:.3f} | {m['channel']:.2f} | {m['residual_ev']:+.1f} |"
        for m in cal.get("landmarks", [])
    ]
    return "\n".join(lines)


def _elementmaps_markdown(ds: DataStack) -> str:
    if "maxrf_elementmaps" not in ds:
        return ""
    attrs = ds.attrs("maxrf_elementmaps")
    maps = ds.array("maxrf_elementmaps")
    proposed = attrs.get("proposed") or {}
    lines = [
        "",
        "## Element maps",
        "",
        f"fitted counts per pixel of all lines of each element; "
        f"{attrs.get('maxrf', {}).get('spectra_per_s', '?')} spectra/s",
        "",
        "| element | mean counts/pixel | max | significance | found in |",
        "|---|---|---|---|---|",
    ]
    for i, el in enumerate(attrs["elements"]):
        m = maps[i]
        p = proposed.get(el, {})
        lines.append(
            f"| {el} | {float(m.mean()):.2f} | {float(m.max()):.1f} | "
            f"{p.get('significance', 'given')} | {p.get('found_in', '')} |"
        )
    return "\n".join(lines)


def _warnings(ds: DataStack) -> list[str]:
    """What a user should know about the results (odd values in the scan, an extrapolated
    energy axis)."""
    out = []
    if "maxrf_cube" in ds:
        out += ds.attrs("maxrf_cube").get("maxrf", {}).get("warnings", [])
    if "maxrf_energies" in ds:
        out += ds.attrs("maxrf_energies").get("calibration", {}).get("warnings", [])
    if "maxrf_elementmaps" in ds:
        out += ds.attrs("maxrf_elementmaps").get("warnings", [])
    return list(out)

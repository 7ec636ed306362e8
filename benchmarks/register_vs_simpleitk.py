"""The refinement step of the automatic registration against SimpleITK's mutual information.

Both start from the same transform (the true one moved 3 scan pixels, turned 2°, scaled 3 %) on
generated mosaics photographed as in ``benchmarks/register.py``: maxrf's canonical images + ECC
(``maxrf.imaging.autoregister.refine``, affine) against SimpleITK's Mattes mutual information
(32 bins, affine, regular-step gradient descent, shrink 4/2/1) between the photo's grey level and
the scan's first principal component. Needs ``pip install 'maxrf[bench]'`` (SimpleITK).
Usage: python benchmarks/register_vs_simpleitk.py
"""

from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk
from register import CASES, jpeg, noisy_maps, seen_corners

from maxrf.demo import DemoSpec, photo_transform, photograph, planted_maps
from maxrf.imaging.autoregister import refine, scan_images
from maxrf.imaging.registration import apply


def mutual_information(image: np.ndarray, photo: np.ndarray, start: np.ndarray) -> np.ndarray:
    """SimpleITK's affine registration of the photo's grey level to ``image`` from ``start``."""
    fixed = sitk.GetImageFromArray(image.astype(np.float32))  # x = column, y = row
    moving = sitk.GetImageFromArray(photo.astype(np.float32).mean(axis=2))
    tx = sitk.AffineTransform(2)
    tx.SetMatrix(start[:2, :2].ravel().tolist())
    tx.SetTranslation(start[:2, 2].tolist())
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.5, 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SetInitialTransform(tx, inPlace=False)
    out = reg.Execute(fixed, moving)
    a = sitk.AffineTransform(out.GetNthTransform(0) if hasattr(out, "GetNthTransform") else out)
    m = np.eye(3)
    m[:2, :2] = np.array(a.GetMatrix()).reshape(2, 2)
    centre = np.array(a.GetCenter())
    m[:2, 2] = np.array(a.GetTranslation()) + centre - m[:2, :2] @ centre
    return m


def main() -> None:
    h, w = 96, 128
    spec = DemoSpec(height=h, width=w, seed=3, paints=6)
    elements, maps = noisy_maps(spec)
    images = scan_images(maps)
    turn = np.deg2rad(2.0)
    nudge = np.array([[1.03 * np.cos(turn), -1.03 * np.sin(turn), 3.0],
                      [1.03 * np.sin(turn), 1.03 * np.cos(turn), -2.0], [0, 0, 1]])
    print(f"{'scale':>5} {'angle':>6} {'start':>6} | {'maxrf median':>12} {'worst':>6} {'s':>5} | "
          f"{'SimpleITK median':>16} {'worst':>6} {'s':>5}")
    for scale, angle, shift, persp, size, painting in CASES:
        if painting != "mosaic" or persp:
            continue
        true = photo_transform(scale, angle, shift, persp)
        photo = jpeg(photograph(elements, planted_maps(spec)[1], true, size, seed=1))
        corners, _shown = seen_corners(true, (h, w), size)
        start = true @ nudge

        def error(m: np.ndarray, corners=corners, true=true, scale=scale) -> np.ndarray:
            return np.linalg.norm(apply(m, corners) - apply(true, corners), axis=1) / scale

        t = time.perf_counter()
        ours = refine(images, photo, start, "affine")[0]
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        theirs = mutual_information(images[0], photo, start)
        t_theirs = time.perf_counter() - t
        e0, e1, e2 = error(start), error(ours), error(theirs)
        print(f"{scale:5.1f} {angle:6.1f} {np.median(e0):6.1f} | {np.median(e1):12.2f} "
              f"{e1.max():6.2f} {t_ours:5.2f} | {np.median(e2):16.2f} {e2.max():6.2f} "
              f"{t_theirs:5.2f}")


if __name__ == "__main__":
    main()

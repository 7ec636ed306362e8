"""What the registration's modules share: its error and points through a 3 × 3 matrix."""

from __future__ import annotations

import numpy as np

from maxrf.errors import MaxrfError


class RegistrationError(MaxrfError):
    """The scan cannot be registered to the photograph with these inputs."""


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(x, y) points through a 3 × 3 matrix."""
    h = np.c_[points, np.ones(len(points))] @ np.asarray(matrix).T
    return h[:, :2] / h[:, 2:3]


def corners(shape: tuple[int, int]) -> np.ndarray:
    """The outer corners (x, y) of an image of ``shape`` (height, width), pixel centres at
    integers: top left, top right, bottom right, bottom left."""
    h, w = shape
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def jacobian(matrix: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 2 × 2 derivative of ``matrix`` at the point ``at`` (x, y)."""
    d = apply(matrix, np.array([at, at + [1, 0], at + [0, 1]], np.float64))
    return np.c_[d[1] - d[0], d[2] - d[0]]

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

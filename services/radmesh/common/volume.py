"""A volume: a numpy array in (z, y, x) order plus its place in patient space.

Geometry follows ITK/DICOM conventions so integrators can map it one-to-one onto
SimpleITK images and DICOM attributes:

- ``spacing_xyz_mm``: voxel size along index axes i (x, fastest), j (y), k (z).
- ``origin_lps_mm``: the LPS position (mm) of the centre of voxel (0, 0, 0).
- ``direction``: 3×3; column c is the LPS unit vector of index axis c (x, y, z),
  exactly SimpleITK's ``GetDirection()`` reshaped row-major.

So the LPS position of voxel centre (i, j, k) is
``origin + direction @ (spacing * (i, j, k))``; the array is indexed ``[k, j, i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radmesh.common.errors import InvalidInputError


class GeometryError(InvalidInputError):
    """Two volumes that should share a grid do not, or a geometry is malformed."""


@dataclass(frozen=True)
class Geometry:
    shape_zyx: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape_zyx", tuple(int(s) for s in self.shape_zyx))
        object.__setattr__(self, "spacing_xyz_mm", tuple(float(s) for s in self.spacing_xyz_mm))
        object.__setattr__(self, "origin_lps_mm", tuple(float(s) for s in self.origin_lps_mm))
        d = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        d.setflags(write=False)
        object.__setattr__(self, "direction", d)
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 1:
            raise GeometryError(f"shape must be three positive sizes, got {self.shape_zyx}")
        if len(self.spacing_xyz_mm) != 3 or not all(np.isfinite(self.spacing_xyz_mm)) or min(self.spacing_xyz_mm) <= 0:
            raise GeometryError(f"spacing must be three positive millimetre values, got {self.spacing_xyz_mm}")
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise GeometryError("direction matrix is not orthonormal")

    # ---- derived quantities -------------------------------------------------
    @property
    def spacing_zyx_mm(self) -> tuple[float, float, float]:
        return self.spacing_xyz_mm[::-1]

    @property
    def voxel_volume_mm3(self) -> float:
        sx, sy, sz = self.spacing_xyz_mm
        return sx * sy * sz

    @property
    def voxel_diagonal_mm(self) -> float:
        return float(np.linalg.norm(self.spacing_xyz_mm))

    @property
    def index_zyx_to_lps(self) -> np.ndarray:
        """4×4 affine taking homogeneous (k, j, i, 1) to (L, P, S, 1) in mm."""
        m = self.direction * np.asarray(self.spacing_xyz_mm)[None, :]  # columns: x, y, z
        a = np.eye(4)
        a[:3, :3] = m[:, ::-1]  # columns: z, y, x
        a[:3, 3] = self.origin_lps_mm
        return a

    def to_lps(self, index_zyx: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (k, j, i), integer or fractional → (N, 3) LPS mm."""
        a = self.index_zyx_to_lps
        return np.asarray(index_zyx, dtype=np.float64) @ a[:3, :3].T + a[:3, 3]

    def to_index_zyx(self, lps_mm: np.ndarray) -> np.ndarray:
        """(N, 3) LPS mm → (N, 3) fractional voxel indices (k, j, i)."""
        a = self.index_zyx_to_lps
        return (np.asarray(lps_mm, dtype=np.float64) - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T

    def matches(self, other: "Geometry", tol_mm: float = 1e-3) -> bool:
        """Same shape, and every voxel centre within ``tol_mm`` of its counterpart."""
        if self.shape_zyx != other.shape_zyx:
            return False
        corners = np.array([[k, j, i] for k in (0, self.shape_zyx[0] - 1)
                            for j in (0, self.shape_zyx[1] - 1) for i in (0, self.shape_zyx[2] - 1)])
        return bool(np.max(np.abs(self.to_lps(corners) - other.to_lps(corners))) <= tol_mm)

    def require_match(self, other: "Geometry", what: str = "label map", ref: str = "CT") -> None:
        if self.shape_zyx != other.shape_zyx:
            raise GeometryError(
                f"{what} grid {other.shape_zyx} (z,y,x) does not match the {ref} grid {self.shape_zyx}"
            )
        if not self.matches(other):
            raise GeometryError(
                f"{what} has the {ref}'s shape but not its spacing, origin or direction "
                f"({what}: spacing {_fmt(other.spacing_xyz_mm)} mm, origin {_fmt(other.origin_lps_mm)}; "
                f"{ref}: spacing {_fmt(self.spacing_xyz_mm)} mm, origin {_fmt(self.origin_lps_mm)})"
            )

    @property
    def is_oblique(self) -> bool:
        return not np.allclose(np.abs(self.direction), np.eye(3), atol=1e-6)


def _fmt(v: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


@dataclass(frozen=True)
class Volume:
    """An image or label map: ``array`` indexed [z, y, x] on ``geometry``."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise GeometryError(f"a volume must be 3-D, got an array of {self.array.ndim} dimensions")
        if tuple(self.array.shape) != self.geometry.shape_zyx:
            raise GeometryError(
                f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape_zyx}"
            )

    @classmethod
    def on_grid_of(cls, array: np.ndarray, like: "Volume") -> "Volume":
        return cls(array, like.geometry)

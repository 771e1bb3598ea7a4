"""Synthetic B-mode phantoms of three echocardiographic views, inside a fan-shaped sector.

The phantoms train the shipped view classifier and feed the synthetic echo-video generator.
Each view is drawn from ellipse-like chambers in a local heart frame (units of roughly one
chamber length), then placed, scaled and rotated into the image:

- ``a4c`` (apical four chamber): two ventricles above two atria, the interventricular /
  interatrial septum and the atrioventricular plane forming a cross, apex towards the probe;
- ``psax`` (parasternal short axis): the left ventricle as a thick ring with two papillary
  muscles, the right ventricle as a crescent wrapped around it;
- ``plax`` (parasternal long axis): an elongated left ventricle between septum and posterior
  wall, the right ventricle as a band above, the aortic root leaving to the right with the left
  atrium below it.

Myocardium is bright and speckled, blood is dark, the pericardium is a bright rim. Everything
outside the scan sector is black. ``phase`` animates the beat: ventricles contract and their walls
thicken towards mid-cycle, atria fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

#: View names; their index is the classifier's class index (0 = A4C, 1 = PSAX, 2 = PLAX).
VIEWS = ("a4c", "psax", "plax")

_MIN_SIDE = 32
_ANATOMY_SIDE = 192  # longest side (px) of the coarse grid the anatomy is drawn on
_LUT_LEVELS = 1024  # grey levels of the gain / log-compression lookup


def sector_mask(
    shape: tuple[int, int],
    apex: tuple[float, float],
    radius: float,
    half_angle_deg: float,
    *,
    inner_radius: float = 0.0,
) -> NDArray[np.bool_]:
    """Boolean mask of an ultrasound scan sector (a fan opening downwards from its apex).

    Parameters
    ----------
    shape : (H, W) of the image in pixels.
    apex : (x, y) of the fan's apex in pixels (may lie outside the image).
    radius : fan radius (imaging depth) in pixels.
    half_angle_deg : half the opening angle in degrees, measured from the downward vertical.
    inner_radius : pixels nearer the apex than this are outside (a curved probe's face: the
        annular sector of a convex array, arc on top), 0 for a phased array's fan.

    Returns
    -------
    mask : bool array (H, W), True inside the fan.
    """
    h, w = _check_shape(shape)
    if radius <= 0 or not 0 < half_angle_deg <= 90 or not 0 <= inner_radius < radius:
        raise ValueError("radius must be > 0, half_angle_deg in (0, 90] and inner_radius in "
                         "[0, radius)")
    ys = np.arange(h, dtype=np.float32)[:, None] - np.float32(apex[1])
    xs = np.arange(w, dtype=np.float32)[None, :] - np.float32(apex[0])
    r2 = xs * xs + ys * ys
    inside_radius = (r2 <= np.float32(radius) ** 2) & (r2 >= np.float32(inner_radius) ** 2)
    # |angle from the vertical| <= half angle  <=>  y >= |x| / tan(half angle)  (for y >= 0)
    inside_angle = ys * np.float32(math.tan(math.radians(half_angle_deg))) >= np.abs(xs)
    inside: NDArray[np.bool_] = inside_radius & inside_angle
    return inside


@dataclass(frozen=True)
class Phantom:
    """Every random choice of one phantom; rendering it at any phase gives the same heart.

    Positions and lengths are in pixels, angles in degrees, levels are linear echo amplitudes
    (1.0 is bright myocardium before gain).
    """

    view: str
    shape: tuple[int, int]
    apex: tuple[float, float]
    radius: float
    half_angle_deg: float
    centre: tuple[float, float]
    unit: float
    rotation_deg: float
    wall: float
    jitter: tuple[float, ...]
    tissue_level: float
    blood_level: float
    background_level: float
    near_field: float
    attenuation: float
    speckle_px: tuple[float, float]
    gain: float
    gamma: float


def sample_phantom(view: str, shape: tuple[int, int], rng: np.random.Generator) -> Phantom:
    """Draw the anatomy, placement, sector and imaging settings of one phantom.

    Parameters
    ----------
    view : one of ``VIEWS``.
    shape : (H, W) of the image in pixels.
    rng : source of every random choice.

    Returns
    -------
    phantom : frozen parameters; pass to ``render_phantom``.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    h, w = _check_shape(shape)
    apex = (w * (0.5 + rng.uniform(-0.03, 0.03)), h * rng.uniform(0.02, 0.10))
    half = rng.uniform(32.0, 42.0)
    radius = (h - apex[1]) * rng.uniform(0.80, 0.93)
    half = min(half, max(28.0, math.degrees(math.asin(min(1.0, 0.47 * w / radius)))))
    radius = min(radius, 0.47 * w / math.sin(math.radians(half)))
    depth = radius * rng.uniform(0.46, 0.58)
    lateral = math.radians(rng.uniform(-0.25, 0.25) * half)
    centre = (apex[0] + depth * math.sin(lateral), apex[1] + depth * math.cos(lateral))
    unit = radius * rng.uniform(0.27, 0.37)
    rotation = {"a4c": rng.uniform(-18, 18), "psax": rng.uniform(-40, 40),
                "plax": rng.uniform(-28, 12)}[view]
    return Phantom(
        view=view,
        shape=(h, w),
        apex=apex,
        radius=radius,
        half_angle_deg=half,
        centre=centre,
        unit=unit,
        rotation_deg=rotation,
        wall=rng.uniform(0.8, 1.25),
        jitter=tuple(rng.uniform(0.85, 1.15, 8).tolist()),
        tissue_level=rng.uniform(0.55, 0.9),
        blood_level=rng.uniform(0.01, 0.06),
        background_level=rng.uniform(0.10, 0.28),
        near_field=rng.uniform(0.0, 0.5),
        attenuation=rng.uniform(0.0, 0.8),
        speckle_px=(rng.uniform(0.6, 1.6) * max(1.0, h / 320), rng.uniform(0.4, 1.0)),
        gain=rng.uniform(0.8, 1.3),
        gamma=rng.uniform(0.6, 0.95),
    )


def render_phantom(
    phantom: Phantom, phase: float, rng: np.random.Generator, *,
    speckle: NDArray[np.float32] | None = None,
) -> NDArray[np.uint8]:
    """Render a phantom at one phase of the heart beat, with fresh speckle from ``rng``.

    Parameters
    ----------
    phantom : parameters from ``sample_phantom``.
    phase : position in the cardiac cycle; taken modulo 1 (0 = end-diastole, 0.5 = systole).
    rng : source of the speckle noise.
    speckle : a unit-mean float32 (H, W) speckle field to use instead of a fresh one from
        ``rng`` (e.g. one frame of :class:`DriftingSpeckle`: speckle that persists over frames).

    Returns
    -------
    image : uint8 grey (H, W); zero outside the scan sector.
    """
    p = phantom
    h, w = p.shape
    contraction = 0.5 * (1.0 - math.cos(2.0 * math.pi * (phase % 1.0)))
    # the anatomy is smooth: draw it on a coarse grid, add full-resolution speckle afterwards
    f = min(1.0, _ANATOMY_SIDE / max(h, w))
    lh, lw = max(8, round(h * f)), max(8, round(w * f))
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) * np.float32(h / lh) - 0.5)[:, None]
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) * np.float32(w / lw) - 0.5)[None, :]
    # local heart coordinates: u to the right, v away from the probe, in units of p.unit
    theta = math.radians(p.rotation_deg)
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    yu = (ys - np.float32(p.centre[1])) / np.float32(p.unit)
    xu = (xs - np.float32(p.centre[0])) / np.float32(p.unit)
    u = c * xu + s * yu
    v = -s * xu + c * yu
    chambers = _ANATOMY[p.view](p, contraction)
    blood = np.full((lh, lw), np.inf, np.float32)
    tissue = np.full((lh, lw), np.inf, np.float32)
    dists: list[NDArray[np.float32]] = []
    for cu, cv, a, b, angle, wall, cut in chambers:
        d = _ellipse_distance(u, v, cu, cv, a, b, angle)
        if cut >= 0:  # keep out of another chamber and its wall (septum)
            d = np.maximum(d, np.float32(chambers[cut][5]) - dists[cut])
        dists.append(d)
        np.minimum(blood, d, out=blood)
        np.minimum(tissue, d - np.float32(wall), out=tissue)
    reflect = np.full((lh, lw), np.float32(p.background_level), np.float32)
    reflect[tissue < 0.06 * p.wall] = 1.15  # pericardium: a bright rim around the heart
    reflect[tissue < 0] = p.tissue_level
    reflect[blood < 0] = p.blood_level
    for cu, cv, r in _extras(p, contraction):  # papillary muscles, valve leaflets
        reflect[(u - np.float32(cu)) ** 2 + (v - np.float32(cv)) ** 2 < r * r] = p.tissue_level
    depth = np.sqrt((xs - np.float32(p.apex[0])) ** 2 + (ys - np.float32(p.apex[1])) ** 2)
    depth /= np.float32(p.radius)
    reflect += np.float32(p.near_field) * np.exp(-depth / np.float32(0.07))
    reflect *= np.exp(-np.float32(p.attenuation) * depth)
    # cv2's stubs return any numeric array; both calls keep the float32 of their input
    reflect = cast(NDArray[np.float32], cv2.GaussianBlur(reflect, (0, 0), 0.7))
    reflect = cast(NDArray[np.float32], cv2.resize(reflect, (w, h), interpolation=cv2.INTER_LINEAR))

    if speckle is None:
        speckle = _speckle((h, w), p.speckle_px, rng)
    elif speckle.shape != (h, w):
        raise ValueError(f"speckle of shape {speckle.shape} for a phantom of {(h, w)}")
    echo = reflect * speckle
    levels = _LUT_LEVELS - 1
    index = np.clip(echo * np.float32(p.gain * levels), 0, levels).astype(np.int32)
    lut = 255.0 * np.linspace(0.0, 1.0, _LUT_LEVELS) ** p.gamma
    image: NDArray[np.uint8] = lut.astype(np.uint8)[index]
    image[~sector_mask((h, w), p.apex, p.radius, p.half_angle_deg)] = 0
    return image


def render_view(
    view: str, shape: tuple[int, int], rng: np.random.Generator, phase: float = 0.0
) -> NDArray[np.uint8]:
    """Render one B-mode-like frame of a heart view inside a random scan sector.

    Anatomy, placement, sector, speckle and gain are all drawn from ``rng``; to animate one heart
    over a clip, either give every frame a generator in the same state (same speckle), or call
    ``sample_phantom`` once and ``render_phantom`` per frame (fresh speckle).

    Parameters
    ----------
    view : one of ``VIEWS`` (``"a4c"``, ``"psax"``, ``"plax"``).
    shape : (H, W) in pixels, each at least 32.
    rng : source of all randomness.
    phase : position in the cardiac cycle, in [0, 1) (taken modulo 1).

    Returns
    -------
    image : uint8 grey (H, W); zero outside the scan sector.
    """
    return render_phantom(sample_phantom(view, shape, rng), phase, rng)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise ValueError(f"shape must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {shape!r}")
    return h, w


def _ellipse_distance(
    u: NDArray[np.float32],
    v: NDArray[np.float32],
    cu: float,
    cv: float,
    a: float,
    b: float,
    angle_deg: float,
) -> NDArray[np.float32]:
    """Approximate signed distance (local units) to an ellipse: negative inside.

    First-order estimate (rho - 1) / |grad rho| with rho the normalised elliptic radius; exact
    on the boundary and good for the few wall thicknesses used here.
    """
    t = math.radians(angle_deg)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    du, dv = u - np.float32(cu), v - np.float32(cv)
    x = c * du + s * dv
    y = -s * du + c * dv
    xa, yb = x / np.float32(a), y / np.float32(b)
    rho = np.sqrt(xa * xa + yb * yb) + np.float32(1e-6)
    grad = np.sqrt((xa / np.float32(a)) ** 2 + (yb / np.float32(b)) ** 2) / rho
    distance: NDArray[np.float32] = (rho - np.float32(1.0)) / (grad + np.float32(1e-6))
    return distance


def _speckle(
    shape: tuple[int, int], grain: tuple[float, float], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Unit-mean, roughly Rayleigh speckle (float32, ``shape``).

    The magnitude of a complex field whose real part is smoothed white noise (``grain`` =
    lateral, axial correlation length in pixels) and whose imaginary part is the same field
    shifted by many correlation lengths: one noise draw instead of two, which halves the cost.
    """
    field = rng.random(shape, dtype=np.float32)
    field = cast(  # cv2's stubs return any numeric array; the blur keeps float32
        NDArray[np.float32], cv2.GaussianBlur(field, (0, 0), sigmaX=grain[0], sigmaY=grain[1]))
    field -= np.float32(field.mean())
    shifted = np.roll(field, (17, 29), axis=(0, 1))
    mag = np.sqrt(field * field + shifted * shifted)
    speckle: NDArray[np.float32] = mag / np.float32(mag.mean() + 1e-6)
    return speckle


class DriftingSpeckle:
    """Speckle that persists from frame to frame, as tissue moving slowly under the probe
    looks (fresh speckle in every frame, what :func:`render_phantom` draws by default, is the
    other extreme).

    One complex field of smoothed white noise (``grain`` = lateral, axial correlation length in
    pixels, as :func:`_speckle`) is drawn once; frame ``t`` sees it moved by ``t * drift``
    (x, y) pixels (bilinear, edges reflected), weighted ``sqrt(1 - renewal)``, plus a fresh
    field weighted ``sqrt(renewal)``: ``renewal`` 0 is frozen speckle that only drifts, 1 is
    fresh speckle every frame. Each field's magnitude is normalised to unit mean.
    """

    def __init__(self, shape: tuple[int, int], grain: tuple[float, float],
                 rng: np.random.Generator, *, drift: tuple[float, float] = (0.0, 0.0),
                 renewal: float = 0.0) -> None:
        if not 0.0 <= renewal <= 1.0:
            raise ValueError("renewal must lie in [0, 1]")
        self.shape, self.grain, self.rng = _check_shape(shape), grain, rng
        self.drift, self.renewal = drift, renewal
        self._base = (self._fresh(), self._fresh())
        self._t = 0

    def _fresh(self) -> NDArray[np.float32]:
        field = self.rng.standard_normal(self.shape, dtype=np.float32)
        field = cast(  # cv2's stubs return any numeric array; the blur keeps float32
            NDArray[np.float32], cv2.GaussianBlur(field, (0, 0), sigmaX=self.grain[0],
                                                  sigmaY=self.grain[1]))
        field /= np.float32(field.std() + 1e-6)
        return field

    def _part(self, base: NDArray[np.float32]) -> NDArray[np.float32]:
        h, w = self.shape
        dx, dy = self.drift[0] * self._t, self.drift[1] * self._t
        move = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
        moved = cast(NDArray[np.float32], cv2.warpAffine(  # keeps float32
            base, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        if self.renewal:
            keep, new = math.sqrt(1.0 - self.renewal), math.sqrt(self.renewal)
            moved = np.float32(keep) * moved + np.float32(new) * self._fresh()
        return moved

    def __next__(self) -> NDArray[np.float32]:
        """The next frame's unit-mean float32 (H, W) speckle field."""
        re, im = self._part(self._base[0]), self._part(self._base[1])
        self._t += 1
        mag = np.sqrt(re * re + im * im)
        speckle: NDArray[np.float32] = mag / np.float32(mag.mean() + 1e-6)
        return speckle

    def __iter__(self) -> DriftingSpeckle:
        return self


#: An elliptic blood pool with its wall: centre (u, v), half axes (a, b), angle (deg), wall
#: thickness, all in local units, and the index of an earlier chamber it must not enter (or -1).
Chamber = tuple[float, float, float, float, float, float, int]


def _a4c(p: Phantom, k: float) -> list[Chamber]:
    j, wall = p.jitter, 0.11 * p.wall
    sys, fill = 1.0 - 0.14 * k, 1.0 + 0.07 * k
    return [  # LV on screen right, RV left, atria below the AV plane
        (0.33, -0.30 + 0.05 * k, 0.27 * j[0] * sys, 0.56 * j[1] * sys, -8.0,
         wall * (1 + 0.3 * k), -1),
        (-0.33, -0.16 + 0.04 * k, 0.23 * j[2] * sys, 0.46 * j[3] * sys, 12.0, 0.7 * wall, 0),
        (0.31, 0.58, 0.26 * j[4] * fill, 0.23 * j[5] * fill, 0.0, 0.7 * wall, -1),
        (-0.31, 0.58, 0.24 * j[6] * fill, 0.23 * j[7] * fill, 0.0, 0.7 * wall, -1),
        (0.0, 0.33, 0.10, 0.06, 0.0, 0.08, -1),  # the crux: fills the centre of the cross
    ]


def _psax(p: Phantom, k: float) -> list[Chamber]:
    j, wall = p.jitter, 0.17 * p.wall
    r = 0.42 * (1.0 - 0.22 * k)
    return [
        (0.0, 0.0, r * j[0], r * j[1], 0.0, wall * (1 + 0.4 * k), -1),
        # the RV: a crescent, what an ellipse leaves outside the LV and its wall
        (-0.25 * j[2], -0.30 * j[3], 0.62 * j[4], 0.42 * j[5] * (1 - 0.1 * k), -50.0, 0.06, 0),
    ]


def _plax(p: Phantom, k: float) -> list[Chamber]:
    j, wall = p.jitter, 0.12 * p.wall
    sys = 1.0 - 0.25 * k
    return [  # apex on the left, base on the right
        (-0.20, 0.05, 0.68 * j[0] * (1 - 0.06 * k), 0.26 * j[1] * sys, 0.0,
         wall * (1 + 0.3 * k), -1),
        (-0.15, -0.50 * j[2], 0.62 * j[3], 0.12 * j[4], 0.0, 0.06, 0),  # RV above the septum
        (0.70, -0.10, 0.33 * j[5], 0.11 * j[6], -12.0, 0.05, -1),  # aortic root
        (0.74, 0.30, 0.21 * j[7] * (1 + 0.08 * k), 0.19 * (1 + 0.08 * k), 0.0, 0.06, -1),  # LA
    ]


_ANATOMY = {"a4c": _a4c, "psax": _psax, "plax": _plax}


def _extras(p: Phantom, k: float) -> list[tuple[float, float, float]]:
    """Small bright discs (u, v, radius): papillary muscles in PSAX, leaflet tips elsewhere."""
    if p.view == "psax":
        r = 0.42 * (1.0 - 0.22 * k)
        return [(0.55 * r, 0.45 * r, 0.08), (-0.5 * r, 0.55 * r, 0.07)]
    if p.view == "plax":
        open_ = 0.06 * (1.0 - k)
        return [(0.42, -0.08 - open_, 0.035), (0.46, 0.14 + open_, 0.035)]
    return []

"""Texture features against slow, obviously-correct references and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from skimage.feature import graycomatrix, graycoprops

from radiomicsd.pipeline.errors import InputError, NoDopplerTexture
from radiomicsd.pipeline.rhd.texture import (
    FRAME_FEATURE_NAMES,
    GLCM_FEATURE_NAMES,
    VIDEO_FEATURE_NAMES,
    frame_features,
    glcm,
    glcm_features,
    grey_levels,
    video_features,
)

OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1))  # 0, 45, 90, 135 degrees, (row, column)


# ---------------------------------------------------------------- slow references
def ref_glcm(levels: np.ndarray, offset: tuple[int, int], n: int = 64) -> np.ndarray:
    """Count every in-image pair with both pixels defined, one pair at a time."""
    counts = np.zeros((n, n))
    h, w = levels.shape
    for r in range(h):
        for c in range(w):
            r2, c2 = r + offset[0], c + offset[1]
            if not (0 <= r2 < h and 0 <= c2 < w):
                continue
            a, b = levels[r, c], levels[r2, c2]
            if math.isnan(a) or math.isnan(b):
                continue
            counts[int(a), int(b)] += 1
    total = counts.sum()
    return counts / total if total else np.full((n, n), np.nan)


def _h(values) -> float:
    return -sum(v * math.log(v) for v in values if v > 0)


def ref_features(P: np.ndarray) -> dict[str, float]:
    """The 19 features of one normalised GLCM from their written definitions, 1-based levels."""
    n = P.shape[0]
    cells = [(i + 1, j + 1, float(P[i, j])) for i in range(n) for j in range(n)]
    px = [sum(P[i, j] for j in range(n)) for i in range(n)]
    py = [sum(P[i, j] for i in range(n)) for j in range(n)]
    ux = sum((i + 1) * px[i] for i in range(n))
    uy = sum((j + 1) * py[j] for j in range(n))
    p_sum = {k: 0.0 for k in range(2, 2 * n + 1)}
    p_diff = {k: 0.0 for k in range(n)}
    for i, j, p in cells:
        p_sum[i + j] += p
        p_diff[abs(i - j)] += p
    f = {
        "autoCorrelation": sum(i * j * p for i, j, p in cells),
        "clusterProminence": sum((i + j - ux - uy) ** 4 * p for i, j, p in cells),
        "clusterShade": sum((i + j - ux - uy) ** 3 * p for i, j, p in cells),
        "contrast": sum((i - j) ** 2 * p for i, j, p in cells),
        "dissimilarity": sum(abs(i - j) * p for i, j, p in cells),
        "energy": sum(p * p for i, j, p in cells),
        "entropy": _h(p for i, j, p in cells),
        "homogeneity": sum(p / (1 + (i - j) ** 2) for i, j, p in cells),
        "inverseDifference": sum(p / (1 + abs(i - j)) for i, j, p in cells),
        "maximumProbability": max(p for i, j, p in cells),
        "sumOfSquaresVariance": sum((i - ux) ** 2 * p for i, j, p in cells),
        "sumEntropy": _h(p_sum.values()),
        "differenceEntropy": _h(p_diff.values()),
    }
    f["sumAverage"] = sum(k * p for k, p in p_sum.items())
    f["sumVariance"] = sum((k - f["sumAverage"]) ** 2 * p for k, p in p_sum.items())
    f["differenceVariance"] = sum((k - f["dissimilarity"]) ** 2 * p for k, p in p_diff.items())
    var_y = sum((j - uy) ** 2 * p for i, j, p in cells)
    cov = sum((i - ux) * (j - uy) * p for i, j, p in cells)
    sx, sy = math.sqrt(f["sumOfSquaresVariance"]), math.sqrt(var_y)
    f["correlation"] = 1.0 if sx < 1e-15 or sy < 1e-15 else cov / (sx * sy)
    hxy = f["entropy"]
    hxy1 = -sum(
        P[i, j] * math.log(px[i] * py[j]) for i in range(n) for j in range(n) if P[i, j] > 0
    )
    hxy2 = _h(px[i] * py[j] for i in range(n) for j in range(n))
    hx, hy = _h(px), _h(py)
    f["informationMeasureOfCorrelation1"] = (
        (hxy - hxy1) / max(hx, hy) if max(hx, hy) > 0 else math.nan
    )
    f["informationMeasureOfCorrelation2"] = math.sqrt(1 - math.exp(-2 * max(hxy2 - hxy, 0.0)))
    return f


def ref_levels(grey: np.ndarray) -> np.ndarray:
    """Python 3's round() (half to even), level 64 clipped to 63, 0 as NaN."""
    z = np.empty(grey.shape)
    for idx, g in np.ndenumerate(grey):
        level = min(round(int(g) / 4), 63)
        z[idx] = math.nan if level == 0 else level
    return z


def ref_blur_max(z0: np.ndarray, sigma: float) -> float:
    """3x3 Gaussian blur with reflect-101 borders, pixel by pixel; return the maximum."""
    g = [math.exp(-(d * d) / (2 * sigma * sigma)) for d in (-1, 0, 1)]
    g = [v / sum(g) for v in g]
    h, w = z0.shape

    def reflect(k: int, size: int) -> int:
        return -k if k < 0 else 2 * size - 2 - k if k >= size else k

    best = -math.inf
    for r in range(h):
        for c in range(w):
            acc = 0.0
            for a in (-1, 0, 1):
                for b in (-1, 0, 1):
                    acc += g[a + 1] * g[b + 1] * z0[reflect(r + a, h), reflect(c + b, w)]
            best = max(best, acc)
    return best


def as_bgr(grey: np.ndarray) -> np.ndarray:
    """A BGR frame whose OpenCV grey equals ``grey`` exactly (equal channels)."""
    return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)


def random_levels(rng: np.random.Generator, low: int, high: int, holes: float) -> np.ndarray:
    z = rng.integers(low, high + 1, size=(12, 15)).astype(np.float64)
    z[rng.random(z.shape) < holes] = np.nan
    return z


# ---------------------------------------------------------------- names
def test_feature_names_match_pilot_model_order():
    import json

    from radiomicsd.pipeline.rhd.grade import default_rhd_model_path

    assert len(FRAME_FEATURE_NAMES) == 28 and len(VIDEO_FEATURE_NAMES) == 57
    doc = json.loads(default_rhd_model_path().read_text())
    assert tuple(doc["feature_names"]) == VIDEO_FEATURE_NAMES
    assert FRAME_FEATURE_NAMES[19:] == (
        "kurtosis", "skewness", "mean", "std", "median", "p25", "p75",
        "maxVelocity", "meanVelocity",
    )  # fmt: skip


# ---------------------------------------------------------------- grey levels
def test_grey_levels_round_half_to_even_clip_and_nan():
    grey = np.array([[0, 1, 2, 3, 6, 10, 14, 253, 254, 255]])
    z = grey_levels(as_bgr(grey))
    expected = [np.nan, np.nan, np.nan, 1, 2, 2, 4, 63, 63, 63]
    np.testing.assert_array_equal(z[0], expected)
    assert z.dtype == np.float64


def test_grey_levels_match_reference_on_colour_pixels():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    bgr[rng.random((9, 11)) < 0.3] = 0
    # OpenCV's BGR2GRAY: fixed-point 0.114 B + 0.587 G + 0.299 R, rounded
    b, g, r = (bgr[:, :, k].astype(np.int64) for k in range(3))
    grey = (b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14
    np.testing.assert_array_equal(grey_levels(bgr), ref_levels(grey))


def test_grey_levels_rejects_non_bgr():
    with pytest.raises(ValueError):
        grey_levels(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        grey_levels(np.zeros((4, 4, 3), np.float32))


# ---------------------------------------------------------------- GLCM
HAND = np.array(
    [
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [1, 3, 3, 3],
        [3, np.nan, 3, 2],
    ]
)


def test_glcm_by_hand_on_4x4():
    P = glcm(HAND)
    assert P.shape == (64, 64, 4)
    at_0 = {(1, 1): 2, (1, 2): 2, (2, 2): 2, (1, 3): 1, (3, 3): 2, (3, 2): 1}  # 10 pairs
    at_90 = {(1, 1): 3, (1, 3): 2, (2, 2): 2, (2, 3): 2, (3, 3): 1, (3, 2): 1}  # 11 pairs
    for a, table, total in ((0, at_0, 10), (2, at_90, 11)):
        expected = np.zeros((64, 64))
        for (i, j), count in table.items():
            expected[i, j] = count / total
        np.testing.assert_allclose(P[:, :, a], expected, atol=1e-15)


def test_glcm_features_by_hand_on_4x4_angle_0():
    f = dict(zip(GLCM_FEATURE_NAMES, glcm_features(glcm(HAND)[:, :, :1]), strict=True))
    # P at 0 degrees: .2 at (1,1) (1,2) (2,2) (3,3), .1 at (1,3) (3,2); 1-based i = level + 1
    expected = {
        "autoCorrelation": 0.2 * (4 + 6 + 9 + 16) + 0.1 * (8 + 12),  # 9.0
        "contrast": 0.2 * 1 + 0.1 * 4 + 0.1 * 1,  # 0.7
        "dissimilarity": 0.2 + 0.1 * 2 + 0.1,  # 0.5
        "energy": 4 * 0.04 + 2 * 0.01,  # 0.18
        "entropy": 0.8 * math.log(5) + 0.2 * math.log(10),
        "homogeneity": 0.2 + 0.2 / 2 + 0.2 + 0.1 / 5 + 0.2 + 0.1 / 2,  # 0.77
        "inverseDifference": 0.2 + 0.2 / 2 + 0.2 + 0.1 / 3 + 0.2 + 0.1 / 2,
        "maximumProbability": 0.2,
        "sumAverage": 0.2 * (4 + 5 + 6 + 8) + 0.1 * (6 + 7),  # 5.9
        # pX = (.5, .2, .3) at i = 2, 3, 4; uX = 2.8
        "sumOfSquaresVariance": 0.5 * 0.8**2 + 0.2 * 0.2**2 + 0.3 * 1.2**2,  # 0.76
        # p_{x-y} = (.6, .3, .1) at k = 0, 1, 2
        "differenceEntropy": -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)),
        "differenceVariance": 0.6 * 0.25 + 0.3 * 0.25 + 0.1 * 2.25,  # 0.45
    }
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12), name


@pytest.mark.parametrize(
    ("seed", "low", "high", "holes"),
    [(0, 1, 63, 0.2), (1, 20, 26, 0.3), (2, 1, 3, 0.1), (3, 40, 41, 0.5)],
)
def test_glcm_and_features_match_slow_reference(seed, low, high, holes):
    z = random_levels(np.random.default_rng(seed), low, high, holes)
    P = glcm(z)
    per_angle = []
    for a, offset in enumerate(OFFSETS):
        ref_P = ref_glcm(z, offset)
        np.testing.assert_allclose(P[:, :, a], ref_P, rtol=1e-12, atol=1e-15)
        ref = ref_features(ref_P)
        got = glcm_features(P[:, :, a : a + 1])
        for k, name in enumerate(GLCM_FEATURE_NAMES):
            assert got[k] == pytest.approx(ref[name], rel=1e-9, abs=1e-12, nan_ok=True), name
        per_angle.append([ref[name] for name in GLCM_FEATURE_NAMES])
    np.testing.assert_allclose(glcm_features(P), np.mean(per_angle, axis=0), rtol=1e-9)


def test_glcm_offsets_and_common_props_agree_with_scikit_image():
    img = np.random.default_rng(5).integers(0, 64, size=(12, 15)).astype(np.uint8)
    P = glcm(img.astype(np.float64))
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    sk = graycomatrix(img, [1], angles, levels=64, normed=True)
    np.testing.assert_allclose(P, sk[:, :, 0, :], atol=1e-15)
    per_angle = np.array([glcm_features(P[:, :, a : a + 1]) for a in range(4)])
    for prop, name in [
        ("contrast", "contrast"), ("dissimilarity", "dissimilarity"),
        ("homogeneity", "homogeneity"), ("ASM", "energy"), ("correlation", "correlation"),
        ("entropy", "entropy"),
    ]:  # fmt: skip
        k = GLCM_FEATURE_NAMES.index(name)
        np.testing.assert_allclose(per_angle[:, k], graycoprops(sk, prop)[0], rtol=1e-9)


def test_angle_without_pairs_is_ignored_in_the_mean():
    z = np.full((6, 6), np.nan)
    z[::2, ::2] = 5.0
    z[1::2, 1::2] = 7.0  # checkerboard: only diagonal neighbours exist
    P = glcm(z)
    assert np.isnan(P[:, :, [0, 2]]).all() and np.isfinite(P[:, :, [1, 3]]).all()
    expected = np.mean([glcm_features(P[:, :, a : a + 1]) for a in (1, 3)], axis=0)
    np.testing.assert_allclose(glcm_features(P), expected, rtol=1e-12)
    single = np.full((3, 3), np.nan)
    single[1, 1] = 9.0
    assert np.isnan(glcm_features(glcm(single))).all()


def test_glcm_rejects_out_of_range_levels():
    with pytest.raises(ValueError):
        glcm(np.array([[1.0, 64.0]]))


# ---------------------------------------------------------------- frame features
@pytest.mark.parametrize("seed", [0, 1])
def test_frame_features_match_references(seed):
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, size=(12, 15))
    grey[rng.random(grey.shape) < 0.25] = 0
    grey[0, 0] = 255
    got = dict(zip(FRAME_FEATURE_NAMES, frame_features(as_bgr(grey)), strict=True))
    z = ref_levels(grey)
    per_angle = [ref_features(ref_glcm(z, offset)) for offset in OFFSETS]
    for name in GLCM_FEATURE_NAMES:
        expected = np.nanmean([f[name] for f in per_angle])
        assert got[name] == pytest.approx(expected, rel=1e-9, abs=1e-12), name
    values = z[~np.isnan(z)]
    ordered = sorted(values)
    assert got["kurtosis"] == pytest.approx(stats.kurtosis(values, fisher=False, bias=True))
    assert got["skewness"] == pytest.approx(stats.skew(values, bias=True))
    assert got["mean"] == pytest.approx(sum(values) / len(values))
    assert got["std"] == pytest.approx(math.sqrt(sum((v - got["mean"]) ** 2 for v in values)
                                                 / len(values)))  # fmt: skip
    assert got["median"] == pytest.approx(stats.scoreatpercentile(ordered, 50))
    assert got["p25"] == pytest.approx(stats.scoreatpercentile(ordered, 25))
    assert got["p75"] == pytest.approx(stats.scoreatpercentile(ordered, 75))
    sigma = 8 / math.sqrt(8 * math.log(2))
    z0 = np.nan_to_num(z, nan=0.0)
    assert got["maxVelocity"] == pytest.approx(0.64 * ref_blur_max(z0, sigma) / 64, rel=1e-9)
    assert got["meanVelocity"] == pytest.approx(0.64 * got["mean"] / 64)


def test_frame_features_none_without_doppler_pixel():
    assert frame_features(np.zeros((8, 8, 3), np.uint8)) is None
    faint = as_bgr(np.full((8, 8), 2))  # grey 2 rounds to level 0 (half to even)
    assert frame_features(faint) is None


def test_frame_with_single_pixel_has_first_order_but_no_glcm():
    grey = np.zeros((5, 5))
    grey[2, 2] = 200
    f = frame_features(as_bgr(grey))
    assert f.shape == (28,) and f.dtype == np.float64
    assert np.isnan(f[:19]).all()
    assert f[FRAME_FEATURE_NAMES.index("mean")] == 50.0
    assert np.isnan(f[FRAME_FEATURE_NAMES.index("kurtosis")])


# ---------------------------------------------------------------- video features
def test_video_features_without_frames_raises():
    with pytest.raises(NoDopplerTexture) as info:
        video_features(np.empty((0, 28)))
    assert info.value.reason == "no_doppler_texture"
    assert not isinstance(info.value, InputError)


def test_max_velocity_is_largest_over_frames_not_lexicographic():
    rows = np.ones((3, 28))
    mv = FRAME_FEATURE_NAMES.index("maxVelocity")
    rows[0, 0], rows[0, mv] = 1000.0, 0.10  # largest autoCorrelation, small velocity
    rows[1, 0], rows[1, mv] = 1.0, 0.55
    rows[2, 0], rows[2, mv] = 2.0, 0.30
    v = video_features(rows)
    assert v.shape == (57,)
    assert v[-1] == 0.55
    assert v[VIDEO_FEATURE_NAMES.index("mean_maxVelocity")] == pytest.approx(0.95 / 3)
    assert v[VIDEO_FEATURE_NAMES.index("median_autoCorrelation")] == 2.0


def test_video_features_ignore_nan_per_feature():
    rows = np.array([[1.0] * 28, [3.0] * 28, [np.nan] * 19 + [8.0] * 9])
    v = video_features(rows)
    assert v[0] == 2.0 and v[28] == 2.0  # GLCM feature: NaN frame ignored
    assert v[19] == 4.0 and v[28 + 19] == 3.0  # kurtosis: all three frames
    all_nan = rows.copy()
    all_nan[:, 0] = np.nan
    assert np.isnan(video_features(all_nan)[0])


def test_video_features_rejects_wrong_width():
    with pytest.raises(ValueError):
        video_features(np.ones((2, 27)))

"""The noise and drawing primitives behind the synthetic scenes."""

from __future__ import annotations

import numpy as np
import pytest

from lineside.synth.noise import blob_alpha, draw_polyline, fractal_noise, lighting_field, streak_noise
from lineside.synth.scene import SENSOR_SIGMA, sensor_noise


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(("angle", "along_x"), [(0.0, True), (3.0, True), (-4.0, True), (90.0, False), (-88.0, False)])
def test_streaks_run_along_their_angle(angle, along_x):
    field = streak_noise(np.random.default_rng(0), (96, 80), 24, angle)
    assert field.shape == (96, 80) and field.dtype == np.float32
    assert abs(field.mean()) < 1e-4 and abs(field.std() - 1) < 1e-3
    horizontal = _corr(field[:, :-1], field[:, 1:])
    vertical = _corr(field[:-1], field[1:])
    assert (horizontal > 0.8 > 0.5 > vertical) if along_x else (vertical > 0.8 > 0.5 > horizontal)


def test_fractal_noise_is_smooth_and_normalised():
    field = fractal_noise(np.random.default_rng(1), (64, 64), cells=4, octaves=3)
    assert abs(field.std() - 1) < 1e-3 and _corr(field[:, :-1], field[:, 1:]) > 0.9


def test_blob_is_one_inside_and_exactly_zero_outside():
    alpha = blob_alpha(np.random.default_rng(2), (64, 64), (32.0, 32.0), radius=8.0, rough=0.3)
    assert alpha[32, 32] == 1.0 and alpha.min() == 0.0 and alpha.max() == 1.0
    ys, xs = np.nonzero(alpha)
    assert np.hypot(xs - 32, ys - 32).max() < 8 * 1.3 / 0.6 + 1  # within the roughened, stretched radius
    assert (alpha[:10] == 0).all() and (alpha[-10:] == 0).all()


def test_polyline_alpha_follows_the_points():
    alpha = draw_polyline((40, 40), np.array([[5.0, 20.0], [35.0, 20.0]]), thickness=2, taper=False)
    assert alpha[20, 10:30].min() > 0.5 and alpha[5].max() == 0 and alpha[35].max() == 0


def test_lighting_is_a_gentle_positive_field():
    light = lighting_field(np.random.default_rng(3), (64, 64))
    assert 0.6 < light.min() and light.max() < 1.5 and light.std() > 0.005


def test_sensor_noise_windows_differ_and_keep_sigma():
    a = sensor_noise(np.random.default_rng(4), 64)
    b = sensor_noise(np.random.default_rng(5), 64)
    assert a.shape == (64, 64, 3) and abs(a.std() - SENSOR_SIGMA) < 0.1
    assert abs(_corr(a, b)) < 0.05

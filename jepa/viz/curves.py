"""Training curves (loss, lr, ...) from a metrics file, drawn with PIL: axes, ticks, two lines.

Each panel shows the raw values as a light line and an exponential moving average as a dark
one (debiased like TensorBoard's, so the start is not pulled towards zero). Schedules (lr, wd,
ema) are exact values, so they are drawn unsmoothed: an average would only make them lag. The
panel is drawn at twice the size and scaled down, which anti-aliases lines and text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jepa.viz.render import Color, font, text_size, vstack

RAW_COLOR: Color = (160, 190, 235)
SMOOTH_COLOR: Color = (25, 90, 200)
GRID_COLOR: Color = (228, 228, 228)
AXIS_COLOR: Color = (70, 70, 70)
SCHEDULE_KEYS = ("lr", "wd", "ema")
SUPERSAMPLE = 2


def ema_smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """Debiased exponential moving average; non-finite entries stay NaN and do not enter it."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must lie in [0, 1), got {weight}")
    values = np.asarray(values, dtype=np.float64)
    out = np.full_like(values, np.nan)
    avg, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        avg = weight * avg + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out[i] = avg / norm
    return out


def linear_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"tick range must be finite with lo < hi, got ({lo}, {hi})")
    raw = (hi - lo) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(count)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside [lo, hi]; with fewer than three of them, 2x and 5x multiples too."""
    if not (0.0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"log tick range must satisfy 0 < lo < hi, got ({lo}, {hi})")
    exponents = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    decades = [10.0**e for e in exponents if lo <= 10.0**e <= hi]
    if len(decades) >= 3:
        return decades
    return [m * 10.0**e for e in exponents for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]


def format_tick(value: float) -> str:
    """Short labels: integers as is, tiny or huge numbers as 1e-4 / 2.5e+05."""
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of every record holding a number under ``key`` (and a ``step``)."""
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and "step" in r:
            steps.append(float(r["step"]))
            values.append(float(v))
    if not steps:
        found = sorted({k for r in records for k in r})
        raise ValueError(f"no record holds a number under {key!r}; keys found: {found}")
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(values)[order]


def _padded_range(values: np.ndarray, log: bool) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi > lo:
        pad = 0.05 * (hi - lo)
    else:  # a flat line: open a window around it
        pad = 0.5 if log else (abs(hi) * 0.1 or 1.0)
    lo, hi = lo - pad, hi + pad
    return (10.0**lo, 10.0**hi) if log else (lo, hi)


def _segments(xs: np.ndarray, ys: np.ndarray) -> list[list[tuple[float, float]]]:
    """Split a polyline at non-finite points so a NaN loss leaves a gap, not a jump."""
    runs, current = [], []
    for x, y in zip(xs, ys):
        if math.isfinite(x) and math.isfinite(y):
            current.append((float(x), float(y)))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def plot_curve(
    steps: Sequence[float],
    values: Sequence[float],
    title: str,
    log_y: bool = False,
    smoothing: float = 0.0,
    width: int = 640,
    height: int = 220,
) -> np.ndarray:
    """One panel: raw line, optional smoothed line, axes with labelled ticks, uint8 (H, W, 3).

    On a log axis non-positive values cannot be placed and are left out (an lr of 0 at step 0).
    """
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != values.shape or steps.size == 0:
        raise ValueError(f"steps and values must be equal-length non-empty 1-D, got {steps.shape}, {values.shape}")
    if width < 160 or height < 100:
        raise ValueError(f"a panel needs at least 160x100 pixels, got {width}x{height}")
    ok = np.isfinite(values) & np.isfinite(steps) & ((values > 0) if log_y else True)
    if not ok.any():
        what = "positive finite" if log_y else "finite"
        raise ValueError(f"{title}: no {what} values to plot")
    smooth = ema_smooth(values, smoothing) if smoothing > 0 else None
    if log_y:
        values = np.where(values > 0, values, np.nan)
        if smooth is not None:
            smooth = np.where(smooth > 0, smooth, np.nan)

    s = SUPERSAMPLE
    size = 12 * s
    x_lo, x_hi = float(steps[ok].min()), float(steps[ok].max())
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1.0, x_hi + 1.0
    y_lo, y_hi = _padded_range(values[ok], log_y)
    y_ticks = log_ticks(y_lo, y_hi) if log_y else linear_ticks(y_lo, y_hi)
    x_ticks = linear_ticks(x_lo, x_hi, max_ticks=7)
    # Reserve room for the widest usual label, so stacked panels line their plot areas up.
    label_w = max(text_size(label, size)[0] for label in ["-2.5e-4", *map(format_tick, y_ticks)])
    line_h = text_size("0", size)[1]
    left, right, top, bottom = label_w + 10 * s, width * s - 14 * s, line_h + 12 * s, height * s - 2 * line_h - 12 * s

    def to_px(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_lo) / (x_hi - x_lo)
        fy = (
            (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
            if log_y
            else (y - y_lo) / (y_hi - y_lo)
        )
        return left + fx * (right - left), bottom - fy * (bottom - top)

    img = Image.new("RGB", (width * s, height * s), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f = font(size)
    for t in y_ticks:
        _, y = to_px(x_lo, t)
        draw.line([(left, y), (right, y)], fill=GRID_COLOR, width=s)
        label = format_tick(t)
        draw.text((left - 5 * s - text_size(label, size)[0], y - line_h / 2), label, fill=AXIS_COLOR, font=f)
    for t in x_ticks:
        x, _ = to_px(t, y_lo)
        draw.line([(x, top), (x, bottom)], fill=GRID_COLOR, width=s)
        draw.line([(x, bottom), (x, bottom + 4 * s)], fill=AXIS_COLOR, width=s)
        label = format_tick(t)
        draw.text((x - text_size(label, size)[0] / 2, bottom + 6 * s), label, fill=AXIS_COLOR, font=f)
    draw.rectangle([left, top, right, bottom], outline=AXIS_COLOR, width=s)
    lines = [(values, RAW_COLOR if smooth is not None else SMOOTH_COLOR, 2 * s if smooth is not None else 3 * s)]
    if smooth is not None:
        lines.append((smooth, SMOOTH_COLOR, 3 * s))
    for ys, color, line_width in lines:
        for run in _segments(steps, ys):
            points = [to_px(x, y) for x, y in run]
            if len(points) == 1:
                (x, y), r = points[0], line_width
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
            else:
                draw.line(points, fill=color, width=line_width, joint="curve")
    caption = title + (" (log scale)" if log_y else "")
    if smooth is not None:
        caption += f": raw (light) and EMA {smoothing:g} (dark)"
    draw.text((left, 4 * s), caption, fill=AXIS_COLOR, font=f)
    draw.text((right - text_size("step", size)[0], bottom + 6 * s + line_h), "step", fill=AXIS_COLOR, font=f)
    return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS)).copy()


def plot_metrics(
    records: Sequence[Mapping[str, Any]],
    keys: Sequence[str] = ("loss", "lr"),
    smoothing: float = 0.6,
    log_keys: Sequence[str] = ("lr",),
    width: int = 640,
    panel_height: int = 220,
) -> np.ndarray:
    """Panels stacked vertically, one per key, from per-step records (see ``read_metrics``)."""
    if not records:
        raise ValueError("no metrics records to plot")
    if not keys:
        raise ValueError("give at least one metric key to plot")
    panels = []
    for key in keys:
        steps, values = series(records, key)
        weight = 0.0 if key in SCHEDULE_KEYS else smoothing
        panels.append(
            plot_curve(steps, values, key, log_y=key in log_keys, smoothing=weight, width=width, height=panel_height)
        )
    return vstack(panels, pad=0)

"""A figure per metric for a report: each configuration's mean with its 95% interval, best first,
the configurations tied with the best in colour. Drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.rank.significance import ConfigStats

ROW, LEFT, RIGHT, TOP, WIDTH = 28, 260, 40, 56, 900
TIED, OTHER, AXIS = (31, 119, 180), (140, 140, 140), (60, 60, 60)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def interval_figure(path: Path, title: str, factors: list[str], configs: list[ConfigStats], unit_note: str) -> Path:
    """Write a PNG: one row per configuration (label = factor values), a dot at the mean and a bar
    over the 95% interval; an axis with five ticks; the tie rule and CI method below."""
    height = TOP + ROW * len(configs) + 70
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)
    draw.text((12, 10), title, fill="black", font=_font(18))
    lows = [c.interval.low for c in configs]
    highs = [c.interval.high for c in configs]
    lo, hi = min(lows), max(highs)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def x(value: float) -> float:
        return LEFT + (value - lo) / (hi - lo) * (WIDTH - LEFT - RIGHT)

    for i, c in enumerate(configs):
        y = TOP + ROW * i + ROW // 2
        colour = TIED if c.tied else OTHER
        label = ", ".join(f"{f}={v}" for f, v in zip(factors, c.config)) + f"  ({len(c.values)} seed{'s' * (len(c.values) != 1)})"
        draw.text((12, y - 8), label, fill="black", font=font)
        draw.line([(x(c.interval.low), y), (x(c.interval.high), y)], fill=colour, width=3)
        for end in (c.interval.low, c.interval.high):
            draw.line([(x(end), y - 6), (x(end), y + 6)], fill=colour, width=2)
        draw.ellipse([x(c.interval.value) - 5, y - 5, x(c.interval.value) + 5, y + 5], fill=colour)
    axis_y = TOP + ROW * len(configs) + 8
    draw.line([(LEFT, axis_y), (WIDTH - RIGHT, axis_y)], fill=AXIS, width=1)
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        draw.line([(x(value), axis_y), (x(value), axis_y + 5)], fill=AXIS)
        draw.text((x(value) - 20, axis_y + 8), f"{value:.4g}", fill=AXIS, font=small)
    draw.text((12, height - 28), f"blue: tied with the best; dot: mean, bar: 95% interval. {unit_note}",
              fill=AXIS, font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path

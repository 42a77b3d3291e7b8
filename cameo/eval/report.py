"""Evaluation outputs a person can read: CSV rows, markdown summary tables, picture grids and bar charts (PNG).

Bar charts are drawn with PIL because the project has no plotting library; they are deliberately plain.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def write_csv(rows: list[dict], path: Path) -> None:
    """All rows (union of their keys as columns) to ``path``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def summarize(rows: list[dict], by: tuple[str, ...], values: tuple[str, ...]) -> list[dict]:
    """Mean of each ``values`` column per group of ``by`` columns (NaN and missing values skipped), with counts."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = tuple(row[k] for k in by)
        for v in values:
            if v in row and not math.isnan(row[v]):
                groups[key][v].append(row[v])
    out = []
    for key, cols in groups.items():
        entry = dict(zip(by, key))
        entry.update({v: float(np.mean(cols[v])) if cols[v] else float("nan") for v in values})
        entry["n"] = max((len(c) for c in cols.values()), default=0)
        out.append(entry)
    return out


def markdown_table(rows: list[dict], digits: int = 4) -> str:
    """A GitHub markdown table of ``rows``."""
    if not rows:
        return "(no rows)\n"
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(x: object) -> str:
        return f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def picture_grid(examples: list[tuple[torch.Tensor, ...]], scale: int | None = None) -> Image.Image:
    """One row per scene: its groups of views side by side, e.g. references | ground-truth targets | warped prior |
    generated targets (grey gaps between groups).

    ``scale`` (default: so that a view is at least 128 px tall) enlarges small images with nearest-neighbour."""
    rows = []
    for groups in examples:
        gap = np.full((groups[0].shape[-2], 4, 3), 128, np.uint8)
        parts = [np.concatenate([_to_uint8(x) for x in group], axis=1) for group in groups]
        rows.append(np.concatenate([x for part in parts for x in (part, gap)][:-1], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    scale = scale or max(1, 128 // examples[0][0].shape[-2])
    return grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)


def bar_chart(labels: list[str], values: list[float], title: str, vmax: float = 1.0) -> Image.Image:
    """Horizontal bars with their values, one per label."""
    bar_w, row_h, label_w = 300, 16, max(8 * max((len(s) for s in labels), default=1), 40)
    image = Image.new("RGB", (label_w + bar_w + 70, row_h * len(labels) + 24), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), title, fill="black")
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 22 + i * row_h
        draw.text((4, y), label, fill="black")
        if not math.isnan(value):
            draw.rectangle([label_w, y + 2, label_w + int(bar_w * min(value / vmax, 1.0)), y + row_h - 3],
                           fill=(70, 110, 200))
        draw.text((label_w + bar_w + 6, y), f"{value:.3f}", fill="black")
    return image


PALETTE = [(70, 110, 200), (220, 90, 60), (60, 160, 90), (150, 90, 180)]


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str,
               size: tuple[int, int] = (420, 280)) -> Image.Image:
    """Lines of ``(x, y)`` points, one per named series, with axis ranges, ticks at the data and a legend."""
    width, height = size
    left, right, top, bottom = 56, 12, 24, 40
    points = [pt for line in series.values() for pt in line if not math.isnan(pt[1])]
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 4), title, fill="black")
    if not points:
        return image
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    pad = (y1 - y0) * 0.08 or abs(y0) * 0.05 or 1.0
    y0, y1, x1 = y0 - pad, y1 + pad, (x1 if x1 > x0 else x0 + 1)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for y in (y0 + pad, (y0 + y1) / 2, y1 - pad):
        _, py = to_px(x0, y)
        draw.text((4, py - 6), f"{y:.3g}", fill="black")
    for x in sorted({p[0] for p in points}):
        px, _ = to_px(x, y0)
        draw.line([px, height - bottom, px, height - bottom + 3], fill="black")
        draw.text((px - 10, height - bottom + 5), f"{x:g}", fill="black")
    draw.text((width // 2 - 20, height - 14), x_label, fill="black")
    draw.text((4, top - 14), y_label, fill="black")
    # legend in the top corner the lines start farther from (left for rising curves, right for falling ones)
    first_x = min(p[0] for p in points)
    starts_high = sum(p[1] for p in points if p[0] == first_x) / sum(p[0] == first_x for p in points) > (y0 + y1) / 2
    legend_x = width - right - 8 - 6 * max(len(name) for name in series) if starts_high else left + 8
    for i, (name, line) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = [to_px(x, y) for x, y in sorted(line) if not math.isnan(y)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((legend_x, top + 6 + 12 * i), name, fill=colour)
    return image

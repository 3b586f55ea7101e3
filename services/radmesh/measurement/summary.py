"""Measurements as a few lines a radiologist can read at a glance."""

from __future__ import annotations

from typing import Any


def format_text(result: dict[str, Any]) -> str:
    lines = []
    for s in result["structures"]:
        head = f"{s['name']:<30} {s['volume_ml']:9.1f} mL"
        if s.get("voxel_count", 1) == 0:
            head = f"{s['name']:<30} not found"
        elif s.get("hu_mean") is not None:
            head += f"   {s['hu_mean']:6.0f} HU"
        lines.append(head)
        for lesion in s.get("lesions") or []:
            lines.append(
                f"  #{lesion['id']:<2} {lesion['location'] or s['name']}: "
                f"{lesion['long_axis_mm']:.1f} × {lesion['short_axis_mm']:.1f} mm "
                f"(image {lesion['long_axis_slice'] + 1}), max 3D {lesion['max_diameter_mm']:.1f} mm, "
                f"{lesion['volume_ml']:.2f} mL, {lesion['hu_mean']:.0f} HU, {lesion['attenuation']}"
            )
    return "\n".join(lines) if lines else "no structures"

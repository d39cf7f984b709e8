"""The main job's built-in demo scene: it holds what its docstring names (the hints of `hints` are made from it)."""

from __future__ import annotations

from affordance.preprocessors.sheet import demo_scene


def test_demo_scene_shows_its_sun_hills_and_windows():
    scene = demo_scene()
    assert scene.shape == (1, 3, 512, 768)
    im = scene[0] * 255

    def rgb(x: int, y: int) -> list[int]:
        return [round(v) for v in im[:, y, x].tolist()]

    r, g, b = rgb(620, 90)  # the sun's centre: filled yellow, not sky
    assert r > 230 and b < 130
    r, g, b = rgb(100, 400)  # the hills: green
    assert g > r + 30 and g > b + 60
    assert rgb(265, 261)[1] > 220  # a window: light
    assert max(rgb(252, 261)) < 120  # its dark frame

"""cameo-data command: show grid, demo scenes (scene.json readable by cameo.scene), clear errors."""

import imageio.v3 as iio
import numpy as np

from cameo.data.cli import main
from cameo.scene import load_scene


def test_show_writes_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["show", str(out), "--resolution", "16", "--tokens", "8", "--kind", "room"]) == 0
    img = iio.imread(out)
    assert img.shape == (3 * 16 * 4, 4 * 16 * 4, 3) and img.std() > 10


def test_demo_scenes_load_as_scenes(tmp_path):
    assert main(["demo", str(tmp_path), "--count", "1", "--kinds", "object", "--resolution", "16", "--views", "3",
                 "--inputs", "2"]) == 0
    scene = load_scene(tmp_path / "object_00" / "scene.json")
    assert len(scene.frames) == 2 and scene.load_images().shape == (2, 3, 16, 16)
    assert np.load(tmp_path / "object_00" / "gt" / "depth.npy").shape == (3, 16, 16)


def test_errors_exit_non_zero(tmp_path, capsys):
    assert main(["show", str(tmp_path / "x.png"), "--dataset", str(tmp_path / "nope")]) == 1
    assert "manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()

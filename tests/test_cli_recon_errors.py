"""cameo-recon CLI: --help, bad input -> exit 2 with file + field and nothing written, nerfstudio input, success."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cameo.importers import opencv_to_opengl
from recon import cli
from tests.pipeline_helpers import two_view_cameras, write_tiny_model, write_two_view_scene


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_format_and_convention(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("scene.json", '"c2w"', '"fx"', "OpenCV", "y down", "--checkpoint", "cameo-train --config demo-cpu",
                   "transforms.json", "--frames"):
        assert needle in text, needle


def _break(scene_path: Path, edit) -> Path:
    data = json.loads(scene_path.read_text())
    edit(data)
    scene_path.write_text(json.dumps(data))
    return scene_path


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["frames"][0].pop("fx"), "frames[0].fx"),
        (lambda d: d["frames"][1]["c2w"][0].__setitem__(0, 2.0), "frames[1].c2w"),
        (lambda d: d.__setitem__("convention", "opengl"), "convention"),
        (lambda d: d["frames"][0].__setitem__("image", "missing.png"), "frames[0].image"),
        (lambda d: d["frames"][1].__setitem__("c2w", d["frames"][0]["c2w"]), "frames"),
    ],
)
def test_invalid_scene_exits_2_and_writes_nothing(tmp_path, capsys, edit, field):
    scene = _break(write_two_view_scene(tmp_path / "scene"), edit)
    out = tmp_path / "out" / "splat.ply"
    code, stdout, err = run_cli(capsys, scene, "--out", out)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err
    assert line.startswith(f"cameo-recon: error: {scene}: {field}")
    assert not (tmp_path / "out").exists()


def test_unreadable_json_and_bad_output_name(tmp_path, capsys):
    bad = tmp_path / "scene.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, bad, "--out", tmp_path / "a.ply")
    assert code == 2 and f"{bad}: not valid JSON" in err
    scene = write_two_view_scene(tmp_path / "scene")
    code, _, err = run_cli(capsys, scene, "--out", tmp_path / "a.obj")
    assert code == 2 and "--out" in err and ".ply" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene", "scene.json"]


def test_missing_model_exits_2_naming_the_fix(tmp_path, capsys):
    scene = write_two_view_scene(tmp_path / "scene")
    code, _, err = run_cli(capsys, scene, "--out", tmp_path / "o" / "s.ply", "--checkpoint", tmp_path / "none")
    assert code == 2
    assert "--checkpoint PATH" in err and "cameo-train --config demo-cpu" in err
    assert not (tmp_path / "o").exists()


def _write_nerfstudio(folder: Path, views: int = 3) -> Path:
    """transforms.json (OpenGL axes) over the two-view scene's images, with a third camera in between."""
    scene = write_two_view_scene(folder)
    K, c2w = two_view_cameras()
    poses = [c2w[0].double().numpy(), c2w[1].double().numpy(), c2w[0].double().numpy()][:views]
    poses[-1][:3, 3] *= 1.5
    frames = [{"file_path": f"input_{i % 2}.png", "transform_matrix": opencv_to_opengl(p).tolist()}
              for i, p in enumerate(poses)]
    meta = {"camera_model": "OPENCV", "w": 32, "h": 24, "fl_x": float(K[0, 0, 0]), "fl_y": float(K[0, 1, 1]),
            "cx": float(K[0, 0, 2]), "cy": float(K[0, 1, 2]), "frames": frames}
    path = scene.parent / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


def test_nerfstudio_input_needs_frames(tmp_path, capsys):
    transforms = _write_nerfstudio(tmp_path / "ns")
    code, _, err = run_cli(capsys, transforms, "--out", tmp_path / "o" / "s.ply")
    assert code == 2 and f"{transforms}: frames" in err and "choose 1 or 2" in err
    code, _, err = run_cli(capsys, transforms, "--frames", "0", "7", "--out", tmp_path / "o" / "s.ply")
    assert code == 2 and "out of range" in err
    code, _, err = run_cli(capsys, tmp_path / "ns" / "scene.json", "--frames", "0", "--out", tmp_path / "o" / "s.ply")
    assert code == 2 and "nerfstudio" in err
    assert not (tmp_path / "o").exists()


def test_nerfstudio_frames_select_the_scene(tmp_path):
    transforms = _write_nerfstudio(tmp_path / "ns")
    scene = cli.load_input(transforms, [0, 2])
    _, c2w = two_view_cameras()
    assert len(scene.frames) == 2
    np.testing.assert_allclose(scene.frames[0].c2w, c2w[0].double().numpy(), atol=1e-6)
    np.testing.assert_allclose(scene.frames[1].c2w[:3, 3], 1.5 * c2w[0, :3, 3].double().numpy(), atol=1e-6)


def test_unexpected_failure_exits_1_without_traceback(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "run_reconstruction", boom)
    scene = write_two_view_scene(tmp_path / "scene")
    code, _, err = run_cli(capsys, scene, "--out", tmp_path / "s.ply")
    assert code == 1 and "RuntimeError: disk on fire" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main([str(scene), "--out", str(tmp_path / "s.ply"), "--debug"])


def test_cli_end_to_end_on_tiny_model(tmp_path, capsys):
    model = write_tiny_model(tmp_path / "model")
    scene = write_two_view_scene(tmp_path / "scene")
    out = tmp_path / "res" / "splat.ply"
    code, stdout, err = run_cli(capsys, scene, "--out", out, "--checkpoint", model, "--views", "2", "--steps", "1",
                                "--fit-iterations", "1", "--fit-points", "100", "--device", "cpu", "--no-video",
                                "--workdir", tmp_path / "work")
    assert code == 0, err
    assert out.is_file()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["frames", "transforms.json", "views.json"]
    assert "total" in stdout and str(out) in stdout
    assert "[1/4] path" in err and "[4/4] export" in err


def test_without_a_bundled_model_the_cli_fits_the_inputs_and_says_so(tmp_path, capsys, monkeypatch):
    import cameo.model_folder

    monkeypatch.delenv("CAMEO_MODEL", raising=False)
    monkeypatch.setattr(cameo.model_folder, "default_model_dir", lambda: tmp_path / "no-model")
    scene = write_two_view_scene(tmp_path / "scene")
    out = tmp_path / "res" / "splat.ply"
    code, stdout, err = run_cli(capsys, scene, "--out", out, "--fit-iterations", "2", "--fit-points", "100")
    assert code == 0, err
    assert "no trained model is bundled yet" in err and "--checkpoint" in err
    assert out.is_file() and "fit" in stdout
    transforms = json.loads((tmp_path / "res" / "splat_views" / "transforms.json").read_text())
    assert len(transforms["frames"]) == 2  # the inputs only: nothing was generated
    assert not (tmp_path / "res" / "splat_views" / "generated.mp4").exists()  # the fly-through is of the splat

"""cameo-eval end to end on the tiny config (random weights, 1 scene, 1 DDIM step)."""

import csv

from cameo.eval.cli import main


def _rows(path, method="model"):
    """Rows of one method (the model by default; the trivial baselines share the table)."""
    with open(path) as f:
        return [r for r in csv.DictReader(f) if method is None or r.get("method", method) == method]


def test_cli_nvs_writes_tables_and_pictures(tmp_path):
    out = tmp_path / "nvs"
    assert main(["nvs", "--config", "tiny", "--scenes", "1", "--steps", "1", "--lpips", "none",
                 "--out", str(out)]) == 0
    rows = _rows(out / "per_view.csv")
    assert [(r["setting"], r["view"]) for r in rows] == [("1-to-3", "1"), ("1-to-3", "2"), ("1-to-3", "3"),
                                                         ("2-to-2", "2"), ("2-to-2", "3")]
    assert all(0 < float(r["psnr"]) < 100 for r in rows)
    methods = {r["method"] for r in _rows(out / "per_view.csv", None)}
    assert {"mean colour", "nearest reference", "warped prior (gt depth)", "warped prior (stereo depth)"} < methods
    assert "| 1-to-3 |" in (out / "summary.md").read_text()
    assert (out / "grid_1-to-3.png").stat().st_size > 0 and (out / "grid_2-to-2.png").is_file()
    assert main(["nvs", "--config", "tiny", "--scenes", "1", "--out", str(out)]) == 1  # exists, no --overwrite


def test_cli_probe_writes_precision_and_pictures(tmp_path):
    assert main(["probe", "--config", "tiny", "--scenes", "1", "--layers", "10", "--grid", "16", "--pictures", "1",
                 "--cameras", "--out", str(tmp_path / "probe")]) == 0
    rows = _rows(tmp_path / "probe" / "per_pair.csv")
    assert len(rows) == 3 and {r["layer"] for r in rows} == {"up_blocks.2.attentions.0.transformer_blocks.0.attn1"}
    for key in ("precision", "attention_precision", "inverted_precision", "head_precision"):  # layer 10 is the CAMEO layer: all three
        assert all(0.0 <= float(r[key]) <= 1.0 for r in rows)
    assert "Cameras on" in (tmp_path / "probe" / "summary.md").read_text()
    assert len(list((tmp_path / "probe").glob("attention_*.png"))) == 1


def test_cli_perturb_reports_change(tmp_path):
    assert main(["perturb", "--config", "tiny", "--scenes", "1", "--steps", "1", "--lpips", "none", "--layers", "10",
                 "--settings", "2-to-2", "--out", str(tmp_path / "perturb")]) == 0
    summary = _rows(tmp_path / "perturb" / "summary.csv")
    assert len(summary) == 1 and float(summary[0]["psnr_to_unperturbed"]) < 100  # the perturbation changed views


def test_cli_failure_leaves_no_output(tmp_path):
    out = tmp_path / "bad"
    assert main(["nvs", "--config", "tiny", "--checkpoint", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert not out.exists() and not list(tmp_path.glob(".bad.*"))
    bad_sdist = tmp_path / "x.tar.gz"
    bad_sdist.write_bytes(b"x")
    assert main(["install-lpips", "--sdist", str(bad_sdist), "--cache", str(tmp_path / "c")]) == 1


def test_cli_nvs_evaluates_an_exported_model_folder(tmp_path):
    from tests.pipeline_helpers import write_tiny_model

    model = write_tiny_model(tmp_path / "model")
    out = tmp_path / "nvs"
    assert main(["nvs", "--checkpoint", str(model), "--scenes", "1", "--steps", "1", "--lpips", "none",
                 "--settings", "2-to-2", "--out", str(out)]) == 0
    rows = _rows(out / "per_view.csv")
    assert [r["setting"] for r in rows] == ["2-to-2", "2-to-2"]
    assert all(0 < float(r["psnr"]) < 100 for r in rows)


def test_cli_nvs_mixed_kind_is_the_benchmarks_object_and_room_set(tmp_path):
    out = tmp_path / "nvs"
    assert main(["nvs", "--config", "tiny", "--kind", "mixed", "--scenes", "2", "--steps", "1", "--lpips", "none",
                 "--settings", "2-to-2", "--out", str(out)]) == 0
    scenes = [r["scene"] for r in _rows(out / "per_view.csv")]
    assert scenes == ["demo-object-0-0000000"] * 2 + ["demo-room-0-0000000"] * 2


def test_picture_grid_lays_out_every_group_of_a_row():
    import torch

    from cameo.eval.report import picture_grid

    refs, prior = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    gt, pred = torch.ones(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    three = picture_grid([(refs, gt, pred)], scale=1)
    four = picture_grid([(refs, gt, prior, pred)], scale=1)
    assert (three.width, three.height) == (3 * 16 + 2 * 4, 10) and four.width == 4 * 16 + 3 * 4
    assert four.getpixel((16 + 4 + 16 + 4 + 1, 1)) == (0, 0, 0)  # the prior column sits before the generated one

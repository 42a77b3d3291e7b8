"""cameo-app served on a free local port and driven with gradio_client (tiny untrained model, tiny settings).

Checks the real HTTP API of the page: a bundled example end to end (every output there and readable, progress
from the pipeline's stages, the viser viewer up), the camera-path controls reaching the generated cameras, the
inputs-only box and the inputs-only fallback without a model, readable errors for bad inputs and for a missing
model, one job at a time, session cleanup, and that nothing but loopback addresses is contacted.
"""

from __future__ import annotations

import app  # noqa: F401,I001 - first: switches telemetry off before gradio_client imports huggingface_hub
import json
import re
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app.outputs import free_port
from app.ui import AppConfig, build_app
from cameo.data.demo import make_demo_scenes
from recon import load_ply
from recon.pipeline import ReconOptions
from tests.pipeline_helpers import write_tiny_model

NUM_VIEWS = 4
LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}
NETWORK_EVENTS: list[tuple[str, str]] = []


def _record_network(event: str, args: tuple) -> None:
    """Audit hook: every host this process resolves or connects to (sockets and DNS, whatever the library)."""
    if event == "socket.connect" and isinstance(args[1], tuple):
        NETWORK_EVENTS.append((event, str(args[1][0])))
    elif event == "socket.getaddrinfo":
        NETWORK_EVENTS.append((event, str(args[0])))


sys.addaudithook(_record_network)


def _inputs(example=None, **overrides) -> list:
    """The /reconstruct arguments in page order: images, camera source + file, camera fields, settings, camera
    path, inputs-only box. The images and camera file are the example's (no example: pass them as overrides)."""
    values = dict(image1=None, image2=None, camera_source="fields", camera_file=None, fov=50, pose_mode="orbit",
                  orbit_deg=30, distance=1.0, tx=0.3, ty=0.0, tz=0.0, num_views=NUM_VIEWS, steps=2, cfg=2.0, seed=0,
                  fit_iterations=3, path_mode="auto", path_size=0.15, inputs_only=False)
    if example is not None:
        values.update(image1=handle_file(str(example.images[0])), image2=handle_file(str(example.images[1])),
                      camera_source="file", camera_file=handle_file(str(example.scene_file)))
    values.update(overrides)
    return list(values.values())


def _launch(config: AppConfig):
    cameo = build_app(config)
    port = free_port()
    cameo.demo.queue().launch(server_port=port, prevent_thread_lock=True, allowed_paths=cameo.allowed_paths(),
                              quiet=True, ssr_mode=False)
    return cameo, Client(f"http://127.0.0.1:{port}/", verbose=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("app")
    model = write_tiny_model(root / "model")
    make_demo_scenes(root / "demo", count=1, kinds=("object",), views=4, resolution=64)
    options = ReconOptions(num_views=NUM_VIEWS, steps=2, fit_iterations=3, fit_points=200, checkpoint=model,
                           device="cpu", show_progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    NETWORK_EVENTS.clear()
    cameo, client = _launch(AppConfig(options=options, examples_dir=root / "demo"))
    yield cameo, client
    client.close()
    cameo.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def example_run(served):
    """One run of the bundled example, with the progress messages seen while it ran."""
    cameo, client = served
    job = client.submit(*_inputs(cameo.examples[0]), api_name="/reconstruct")
    descriptions = set()
    while not job.done():
        status = job.status()
        descriptions.update(p.desc for p in (status.progress_data or []) if p.desc)
        time.sleep(0.02)
    return job.result(timeout=120), descriptions


def test_example_run_returns_every_output(example_run, served):
    (gallery, video, splat, ply, views_zip, viewer, status), _ = example_run
    assert len(gallery) == NUM_VIEWS and all(Path(item["image"]).is_file() for item in gallery)
    assert len(list(iio.imiter(video))) == NUM_VIEWS + 2  # the fitted Gaussians along the path (inputs included)
    splats = load_ply(ply)
    assert len(splats) > 0 and Path(splat).read_bytes() == Path(ply).read_bytes()
    with zipfile.ZipFile(views_zip) as zf:
        names = set(zf.namelist())
    assert names == {"transforms.json", "views.json", *(f"frames/{i:04d}.png" for i in range(NUM_VIEWS + 2))}
    assert status.startswith(f"Done: {NUM_VIEWS} generated views")
    url = viewer.split("](")[1].split(")")[0]
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as resp:  # the viser viewer of this session
        assert resp.status == 200


def test_progress_follows_pipeline_stages(example_run):
    _, descriptions = example_run
    assert any(d.startswith("Generating views") for d in descriptions), descriptions


def test_bad_inputs_are_readable_errors(served, tmp_path):
    cameo, client = served
    example = cameo.examples[0]
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels")
    cases = {
        "is not an image this app can read": dict(image1=handle_file(str(text))),
        "none was uploaded": dict(camera_file=None),
        "both images must have the same size": dict(image2=handle_file(str(_small_png(tmp_path)))),
        "scene.json: frames[0].width/height": dict(camera_source="file", image1=handle_file(str(_small_png(tmp_path))),
                                                   image2=None),
        "path mode 'circle' does not apply to 2 input view(s); choose one of auto, orbit, linear":
            dict(path_mode="circle"),
        "path mode 'linear' does not apply to 1 input view(s)": dict(image2=None, camera_source="fields",
                                                                     path_mode="linear"),
        "path_size must be > 0": dict(image2=None, camera_source="fields", path_size=0.0),
    }
    for expected, overrides in cases.items():
        with pytest.raises(AppError, match=re.escape(expected)):
            client.predict(*_inputs(example, **overrides), api_name="/reconstruct")


def _small_png(folder: Path) -> Path:
    path = folder / "input_00.png"  # named like the example's first input, but 20x20
    Image.new("RGB", (20, 20)).save(path)
    return path


def test_heavy_job_runs_one_at_a_time(served):
    cameo, _ = served
    (fn,) = [f for f in cameo.demo.fns.values() if f.api_name == "reconstruct"]
    assert fn.concurrency_limit == 1 and fn.queue


def test_nothing_but_loopback_is_contacted(example_run):
    hosts = {host for _, host in NETWORK_EVENTS}
    assert hosts and hosts <= LOOPBACK, hosts


def test_missing_model_is_explained(tmp_path):
    missing = tmp_path / "no-model"
    options = ReconOptions(checkpoint=missing, device="cpu", show_progress=False)
    cameo, client = _launch(AppConfig(options=options, examples_dir=None))
    try:
        page = urllib.request.urlopen(client.src + "config", timeout=10).read().decode()
        assert "No trained model available" in page and str(missing) in page
        image = tmp_path / "image.png"
        Image.new("RGB", (32, 24)).save(image)
        with pytest.raises(AppError, match="No usable model"):
            client.predict(handle_file(str(image)), None, "fields", None, 50, "orbit", 30, 1.0, 0.3, 0.0, 0.0, 4, 2,
                           2.0, 0, 3, "auto", 0.15, False, api_name="/reconstruct")
    finally:
        client.close()
        cameo.close()


def _one_image(folder: Path) -> dict:
    """/reconstruct overrides for one uploaded noise image whose camera comes from the fields (identity c2w)."""
    path = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return dict(image1=handle_file(str(path)), image2=None, camera_source="fields", camera_file=None)


def _centres(views_zip: str) -> np.ndarray:
    """Camera centres ``[M, 3]`` of the run's transforms.json (path order; translation is the same in OpenGL)."""
    with zipfile.ZipFile(views_zip) as zf:
        frames = json.loads(zf.read("transforms.json"))["frames"]
    return np.array([f["transform_matrix"] for f in frames])[:, :3, 3]


@pytest.mark.parametrize(("mode", "axis"), [("forward", 2), ("sideways", 0)])
def test_camera_path_controls_shape_the_generated_cameras(served, tmp_path, mode, axis):
    """One image at the origin looking along +z: the look-at depth defaults to 1, so ``forward`` / ``sideways``
    move the camera along z / x by ``size * t``, t = i / (views + 1)."""
    cameo, client = served
    size = 0.3
    out = client.predict(*_inputs(**_one_image(tmp_path), path_mode=mode, path_size=size),
                         api_name="/reconstruct")
    centres = _centres(out[4])
    expected = np.zeros((NUM_VIEWS + 1, 3))
    expected[:, axis] = size * np.arange(NUM_VIEWS + 1) / (NUM_VIEWS + 1)
    np.testing.assert_allclose(centres, expected, atol=1e-5)
    assert len(out[0]) == NUM_VIEWS


def test_inputs_only_box_skips_generation(served):
    cameo, client = served
    gallery, video, _, ply, views_zip, _, status = client.predict(*_inputs(cameo.examples[0], inputs_only=True),
                                                                  api_name="/reconstruct")
    assert status.startswith("Done, inputs only (generation skipped as asked)"), status
    assert gallery == [] and len(load_ply(ply)) > 0
    assert len(list(iio.imiter(video))) == NUM_VIEWS + 2  # the fly-through still follows the path
    assert len(_centres(views_zip)) == 2  # the two uploaded views, nothing generated


def _component(page_config: dict, elem_id: str) -> dict:
    (props,) = [c["props"] for c in page_config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    return props


def test_without_a_model_the_app_fits_the_inputs_and_says_so(tmp_path, monkeypatch):
    """No --checkpoint and nothing bundled (whatever assets/model holds in this checkout): like cameo-recon, runs
    fit the uploaded views only, and the page says so before and after a run."""
    import cameo.model_folder

    monkeypatch.delenv("CAMEO_MODEL", raising=False)
    monkeypatch.setattr(cameo.model_folder, "default_model_dir", lambda: tmp_path / "no-model")
    options = ReconOptions(fit_iterations=3, fit_points=200, device="cpu", show_progress=False)
    cameo, client = _launch(AppConfig(options=options, examples_dir=None))
    try:
        page = json.loads(urllib.request.urlopen(client.src + "config", timeout=10).read())
        notice = _component(page, "model-status")["value"]
        assert "No trained model yet" in notice and "uploaded views only" in notice and "--checkpoint" in notice
        box = _component(page, "inputs-only")
        assert box["value"] is True and box["interactive"] is False
        gallery, video, _, ply, _, _, status = client.predict(*_inputs(**_one_image(tmp_path)),
                                                              api_name="/reconstruct")
    finally:
        client.close()
        cameo.close()
    assert status.startswith("Done, inputs only (no trained model is available): "), status
    assert "1 uploaded view(s)" in status
    assert gallery == [] and video is not None and len(load_ply(ply)) > 0  # the fly-through of the fitted inputs


def test_session_files_go_when_the_session_ends(example_run, served):
    """Last in the module: closing the client ends its session (gradio's unload, after its heartbeat stops)."""
    cameo, client = served
    (workspace,) = cameo.workspaces._sessions.values()
    assert list(workspace.dir.glob("run-*/splat.ply")) and workspace.viewer is not None
    client.close()
    deadline = time.monotonic() + 30
    while workspace.dir.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workspace.dir.exists() and workspace.viewer is None

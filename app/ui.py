"""The Gradio page of ``cameo-app``: inputs and settings, a Run handler on ``recon.pipeline``, the results.

The handler only glues: ``app.inputs`` builds the scene, ``recon.pipeline.run_reconstruction`` does the work (its
progress callback drives ``gr.Progress``), ``app.outputs`` zips the views and starts the viser viewer. Every
expected failure reaches the page as a readable ``gr.Error``; unexpected ones are logged with their traceback on
the server and summarised in one line on the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from app.camera_fields import RELATIVE_POSE_MODES, CameraFields
from app.examples import DEFAULT_EXAMPLES_DIR, Example, find_examples
from app.inputs import DEFAULT_MAX_PIXELS, InputError, build_scene
from app.model_loader import ModelHolder
from app.outputs import start_viewer, zip_views
from app.workspace import Workspaces
from cameo.scene import SceneError
from recon.pipeline import (
    ONE_VIEW_KINDS,
    TWO_VIEW_MODES,
    ProgressFn,
    ReconError,
    ReconOptions,
    ReconResult,
    run_reconstruction,
)

log = logging.getLogger(__name__)

STAGES = {  # pipeline stage -> (start, end) of the overall bar, label
    "path": (0.00, 0.02, "Planning the camera path"),
    "generate": (0.02, 0.70, "Generating views"),
    "fit": (0.70, 0.98, "Fitting 3D Gaussians"),
    "export": (0.98, 1.00, "Writing splat.ply"),
}
INTRO = """# cameo-recon: 3D from one or two photos
Upload 1 or 2 images of a scene (or click an example below), set their cameras, press **Run**. A multi-view
diffusion model generates views along a camera path, then 3D Gaussians are fitted to them. Everything runs on this
machine; nothing is sent anywhere."""
PATH_MODE_INFO = "2 images: auto (orbit or linear), orbit, linear. 1 image: auto (= circle), circle, orbit, forward, sideways."
NO_MODEL_REASON = "no trained model is available"


@dataclass
class AppConfig:
    """How the app runs; ``options`` holds the pipeline settings not on the page (device, model, fitting)."""

    options: ReconOptions = field(default_factory=lambda: ReconOptions(show_progress=False))
    examples_dir: Path | None = DEFAULT_EXAMPLES_DIR
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    session_ttl: float = 3600.0
    viewer_host: str = "127.0.0.1"


@dataclass
class CameoApp:
    """The built page plus what it owns (sessions' temp folders and viewers, the model); ``close`` frees them."""

    demo: gr.Blocks
    workspaces: Workspaces
    models: ModelHolder
    examples: list[Example]
    config: AppConfig

    def allowed_paths(self) -> list[str]:
        """Folders gradio may serve files from: the session folders and the examples."""
        paths = [str(self.workspaces.root)]
        if self.config.examples_dir is not None and Path(self.config.examples_dir).is_dir():
            paths.append(str(Path(self.config.examples_dir).resolve()))
        return paths

    def close(self) -> None:
        self.demo.close()
        self.workspaces.shutdown()


def image_input(label: str) -> gr.Image:
    """An image upload (file path) whose decoding failures reach the page as a readable ``gr.Error``.

    gradio's ``Image.preprocess`` opens the upload with PIL and lets its exception escape as an opaque server
    error. The check wraps this one instance's method: subclassing a component makes gradio write a ``.pyi``
    stub next to the subclass's source file at import time.
    """
    image = gr.Image(label=label, type="filepath", sources=["upload", "clipboard"])
    preprocess = image.preprocess

    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", None) or "upload").name
            raise gr.Error(f"{label} ({name}) is not an image this app can read (PNG, JPEG, WebP, ...): {err}",
                           print_exception=False) from None

    image.preprocess = checked  # type: ignore[method-assign]
    return image


def overall_progress(stage: str, fraction: float) -> tuple[float, str]:
    """Position on the page's single progress bar and its label for a pipeline ``(stage, fraction)`` report."""
    start, end, label = STAGES.get(stage, (0.0, 1.0, stage))
    return start + (end - start) * fraction, f"{label} ({fraction:.0%})"


def error_message(err: Exception) -> str:
    """User-facing text of an expected error (scene errors name the uploaded file by its name, not its temp path)."""
    if isinstance(err, SceneError):
        where = f"{Path(err.file).name}: {err.field}" if err.field else Path(err.file).name
        return f"{where}: {err.message}"
    return str(err)


def path_mode_choices() -> list[tuple[str, str]]:
    """``(label, value)`` of the camera-path dropdown: ``cameo-recon --path-mode``'s choices, each labelled with
    the number of images it applies to (the pipeline refuses a mode that does not fit)."""
    def label(mode: str) -> str:
        if mode == "auto":
            return "auto"
        counts = [str(n) for n, modes in ((1, ONE_VIEW_KINDS), (2, TWO_VIEW_MODES)) if mode in modes]
        return f"{mode} ({' or '.join(counts)} image{'' if counts == ['1'] else 's'})"

    return [(label(mode), mode) for mode in sorted(set(TWO_VIEW_MODES + ONE_VIEW_KINDS))]


def _summary(result: ReconResult, inputs_only_reason: str | None) -> str:
    """The status line after a run; an inputs-only run says so and why (no model, or the user's choice)."""
    seconds = ", ".join(f"{name} {s:.1f} s" for name, s in result.stage_seconds.items())
    if inputs_only_reason is None:
        return f"Done: {len(result.target_indices)} generated views, {len(result.splats)} Gaussians. Time: {seconds}."
    return (f"Done, inputs only ({inputs_only_reason}): {len(result.splats)} Gaussians fitted to the "
            f"{len(result.input_indices)} uploaded view(s); no views were generated. Time: {seconds}.")


@dataclass
class RunRequest:
    """One press of Run: the page's inputs in page order (the ``/reconstruct`` API's arguments)."""

    image1: str | None
    image2: str | None
    camera_source: str
    camera_file: str | None
    fov: float
    pose_mode: str
    orbit_deg: float
    distance: float
    tx: float
    ty: float
    tz: float
    num_views: float
    steps: float
    cfg: float
    seed: float
    fit_iterations: float
    path_mode: str
    path_size: float
    inputs_only: bool

    def camera_fields(self) -> CameraFields:
        """The typed-in cameras (used when the camera source is "fields")."""
        return CameraFields(float(self.fov), self.pose_mode, float(self.orbit_deg), float(self.distance),
                            (self.tx, self.ty, self.tz))

    def options(self, defaults: ReconOptions, generate: bool) -> ReconOptions:
        """The pipeline settings: the page's values over the app's ``defaults``."""
        return replace(defaults, num_views=int(self.num_views), steps=int(self.steps), cfg=float(self.cfg),
                       seed=int(self.seed), fit_iterations=int(self.fit_iterations), path_mode=self.path_mode,
                       path_size=float(self.path_size), generate=generate)


@dataclass
class RunHandler:
    """Runs the pipeline for one request in the browser session's workspace and returns the page's outputs."""

    config: AppConfig
    models: ModelHolder
    workspaces: Workspaces

    def __call__(self, run: RunRequest, session: str, progress: gr.Progress) -> tuple:
        """Values of the output components; expected failures become a readable ``gr.Error``.

        Without a model (none given, none bundled) the run fits the input views only, like ``cameo-recon``.
        """
        skip_reason = (NO_MODEL_REASON if self.models.missing()
                       else "generation skipped as asked" if run.inputs_only else None)
        try:
            result, views_zip, viewer = self._reconstruct(run, skip_reason, session, progress)
        except (InputError, SceneError, ReconError) as err:
            raise gr.Error(error_message(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - the page gets one line, the server log the traceback
            log.exception("reconstruction failed")
            raise gr.Error(f"Reconstruction failed ({type(err).__name__}: {err}); the server log has details.",
                           print_exception=False) from None
        gallery = [(str(result.frames[i]), f"view {i}") for i in result.target_indices]
        link = f"**3D viewer:** [{viewer.url}]({viewer.url}) (viser, open while this page is)"
        ply = str(result.ply)
        return (gallery, str(result.video) if result.video else None, ply, ply, str(views_zip), link,
                _summary(result, skip_reason))

    def _reconstruct(self, run: RunRequest, skip_reason: str | None, session: str,
                     progress: gr.Progress) -> tuple[ReconResult, Path, Any]:
        """Scene, model, pipeline, zip and viewer of one run: (result, views zip, viewer session)."""
        scene = build_scene([run.image1, run.image2], run.camera_source, run.camera_file, run.camera_fields(),
                            self.config.max_image_pixels)
        options = run.options(self.config.options, generate=skip_reason is None)
        pretrained = None
        if options.generate:
            progress(0.0, desc="Loading the model")
            pretrained = self.models.get()
        with self.workspaces.get(session).in_use() as ws:
            folder = ws.new_run()
            result = run_reconstruction(scene, folder / "splat.ply", options, folder / "views", _report_to(progress),
                                        pretrained=pretrained)
            views_zip = zip_views(result, folder / "views.zip")
            ws.viewer = start_viewer(result, self.config.viewer_host)
        return result, views_zip, ws.viewer


def _api_handler(handler: RunHandler) -> Callable[..., tuple]:
    """The Run button's gradio function: gradio passes the inputs positionally and fills ``request`` and
    ``progress`` itself; the parameter names are the ``/reconstruct`` API's keyword names."""

    def reconstruct(image1: str | None, image2: str | None, camera_source: str, camera_file: str | None,
                    fov: float, pose_mode: str, orbit_deg: float, distance: float, tx: float, ty: float, tz: float,
                    num_views: float, steps: float, cfg: float, seed: float, fit_iterations: float,
                    path_mode: str, path_size: float, inputs_only: bool,
                    request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        """Run the pipeline on the page's inputs; returns the values of the output components."""
        run = RunRequest(image1, image2, camera_source, camera_file, fov, pose_mode, orbit_deg, distance, tx, ty, tz,
                         num_views, steps, cfg, seed, fit_iterations, path_mode, path_size, inputs_only)
        return handler(run, request.session_hash or "local", progress)

    return reconstruct


@dataclass
class _CameraInputs:
    """The image and camera components of the page (the first eleven Run inputs) and the groups they toggle."""

    components: list[Any]
    camera_source: gr.Radio
    camera_file: gr.File
    field_group: gr.Group
    pose_mode: gr.Radio
    orbit_row: gr.Row
    translation_row: gr.Row


def _camera_inputs(config: AppConfig, examples: list[Example]) -> _CameraInputs:
    """Image uploads, where their cameras come from (file or fields), the camera fields, the bundled examples."""
    with gr.Row():
        image1 = image_input("Image 1")
        image2 = image_input("Image 2 (optional)")
    camera_source = gr.Radio([("Fields below", "fields"), ("Camera file", "file")], value="fields", label="Cameras")
    camera_file = gr.File(label="scene.json or nerfstudio transforms.json", file_types=[".json"], type="filepath",
                          visible=False)
    with gr.Group(visible=True) as field_group:
        fov = gr.Slider(10, 120, value=CameraFields.fov_deg, step=1, label="Horizontal field of view (degrees)")
        pose_mode = gr.Radio(list(RELATIVE_POSE_MODES), value=CameraFields.mode, label="Image 2 relative to image 1")
        with gr.Row(visible=True) as orbit_row:
            orbit_deg = gr.Number(CameraFields.orbit_deg, label="Orbit angle (degrees, + = right)")
            distance = gr.Number(CameraFields.distance, label="Look-at distance")
        with gr.Row(visible=False) as translation_row:
            tx, ty, tz = (gr.Number(v, label=f"{axis} (camera 1 axes: x right, y down, z forward)")
                          for v, axis in zip(CameraFields.translation, "xyz"))
    if examples:
        gr.Examples([[str(e.images[0]), str(e.images[1]) if len(e.images) > 1 else None, "file", str(e.scene_file)]
                     for e in examples],
                    inputs=[image1, image2, camera_source, camera_file],
                    example_labels=[e.name for e in examples], examples_per_page=len(examples),
                    label="Bundled examples (click one, then Run)")
    else:
        gr.Markdown(f"No bundled examples in `{config.examples_dir}` (make them with `cameo-data demo assets/demo`).")
    components = [image1, image2, camera_source, camera_file, fov, pose_mode, orbit_deg, distance, tx, ty, tz]
    return _CameraInputs(components, camera_source, camera_file, field_group, pose_mode, orbit_row, translation_row)


def _settings(d: ReconOptions, model_missing: bool) -> tuple[list[Any], gr.Checkbox]:
    """The settings accordion: (the last eight Run inputs in page order, the inputs-only box)."""
    with gr.Accordion("Settings", open=True):
        inputs_only = gr.Checkbox(label="Inputs only (skip generation)", elem_id="inputs-only",
                                  info="Fit 3D Gaussians to the uploaded views alone: no model needed, "
                                       "fast, but 1-2 views constrain the geometry poorly.",
                                  **_inputs_only_box(model_missing, d.generate))
        with gr.Row():
            path_mode = gr.Dropdown(path_mode_choices(), value=d.path_mode, label="Camera path",
                                    info=PATH_MODE_INFO, elem_id="path-mode")
            path_size = gr.Number(d.path_size, label="Path size",
                                  info="1 image: motion relative to the look-at depth (> 0)")
        num_views = gr.Slider(1, 200, value=d.num_views, step=1, label="Generated views")
        steps = gr.Slider(1, 100, value=d.steps, step=1, label="DDIM steps")
        cfg = gr.Slider(1.0, 10.0, value=d.cfg, step=0.1, label="CFG scale (1 = no guidance)")
        seed = gr.Number(d.seed, precision=0, label="Seed")
        fit_iterations = gr.Number(d.fit_iterations, precision=0, minimum=1, label="Fitting iterations")
    return [num_views, steps, cfg, seed, fit_iterations, path_mode, path_size, inputs_only], inputs_only


def _results() -> list[Any]:
    """The result components, in the order the Run handler returns their values (the status box comes last)."""
    gallery = gr.Gallery(label="Generated views", columns=6, height=260, elem_id="gallery")
    video = gr.Video(label="Fly-through", autoplay=True, loop=True, height=320)
    splat_view = gr.Model3D(label="3D Gaussians (splat.ply)", elem_id="splat", height=360)
    with gr.Row():
        ply_file = gr.File(label="splat.ply")
        zip_file = gr.File(label="views + transforms.json (zip)")
    viewer_link = gr.Markdown(elem_id="viewer-link")
    return [gallery, video, splat_view, ply_file, zip_file, viewer_link]


def build_app(config: AppConfig | None = None) -> CameoApp:
    """Build the page (not yet launched). The model is loaded now so the page can say whether one is available."""
    config = config or AppConfig()
    models = ModelHolder(config.options.checkpoint, config.options.device)
    workspaces = Workspaces(config.session_ttl)
    examples = find_examples(config.examples_dir)
    d = config.options

    def model_notice() -> tuple[str, dict]:
        """The model line and the inputs-only box as of now (refreshed on page load: a model may have appeared)."""
        return models.status(), gr.update(**_inputs_only_box(models.missing(), d.generate))

    def end_session(request: gr.Request) -> None:
        workspaces.close(request.session_hash or "local")

    with gr.Blocks(title="cameo-recon", analytics_enabled=False, delete_cache=(600, int(config.session_ttl))) as demo:
        gr.Markdown(INTRO)
        model_status = gr.Markdown(models.status(), elem_id="model-status")
        with gr.Row():
            with gr.Column(scale=1):
                cameras = _camera_inputs(config, examples)
                settings, inputs_only = _settings(d, models.missing())
                run_button = gr.Button("Run", variant="primary", elem_id="run")
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
            with gr.Column(scale=1):
                results = _results()
        cameras.camera_source.change(lambda s: (gr.update(visible=s == "file"), gr.update(visible=s == "fields")),
                                     cameras.camera_source, [cameras.camera_file, cameras.field_group],
                                     api_visibility="private", queue=False)
        cameras.pose_mode.change(lambda m: (gr.update(visible=m == "orbit"), gr.update(visible=m == "translation")),
                                 cameras.pose_mode, [cameras.orbit_row, cameras.translation_row],
                                 api_visibility="private", queue=False)
        run_button.click(_api_handler(RunHandler(config, models, workspaces)), cameras.components + settings,
                         results + [status], api_name="reconstruct", concurrency_limit=1,
                         concurrency_id="reconstruct")
        demo.load(model_notice, None, [model_status, inputs_only], api_visibility="private", queue=False)
        demo.unload(end_session)
    return CameoApp(demo, workspaces, models, examples, config)


def _inputs_only_box(model_missing: bool, generate: bool) -> dict[str, bool]:
    """Value and interactivity of the inputs-only box: ticked and locked while no model is available."""
    return {"value": model_missing or not generate, "interactive": not model_missing}


def _report_to(progress: gr.Progress) -> ProgressFn:
    """The pipeline's ``progress(stage, fraction)`` callback feeding the page's progress bar."""
    def report(stage: str, fraction: float) -> None:
        value, label = overall_progress(stage, fraction)
        progress(value, desc=label)

    return report

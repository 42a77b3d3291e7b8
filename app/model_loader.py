"""The model the app serves: loaded once, shared by every run; a missing model is a message, not a crash."""

from __future__ import annotations

import threading
from pathlib import Path

from cameo.model_folder import CameoModel, ModelFolderError, bundled_model_missing, default_model_dir
from recon.pipeline import ReconError


class ModelHolder:
    """Loads the exported model folder on first need and keeps it; retries while it is missing.

    Retrying means a model copied into place after the app started is picked up without a restart.
    """

    def __init__(self, checkpoint: Path | None = None, device: str = "auto") -> None:
        self.checkpoint = checkpoint
        self.device = device
        self._model: CameoModel | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def get(self) -> CameoModel:
        """The loaded model; raises :class:`ReconError` with the loader's explanation if it cannot be loaded."""
        with self._lock:
            if self._model is None:
                try:
                    self._model = CameoModel.from_pretrained(self.checkpoint, self.device)
                    self._error = None
                except (ModelFolderError, ValueError) as err:
                    self._error = str(err)
                    raise ReconError(f"No usable model: {err}") from None
            return self._model

    def missing(self) -> bool:
        """No model folder given and none bundled or configured: runs fit the input views only, as ``cameo-recon``
        does then. Checked per run, so a model copied into place later is used without a restart."""
        return self.checkpoint is None and bundled_model_missing()

    def status(self) -> str:
        """One Markdown line: what is loaded, that runs fit the inputs only, or why nothing is (tries to load)."""
        if self.missing():
            return (f"**No trained model yet** (`{default_model_dir()}` is missing and no `--checkpoint` was given): "
                    "runs skip view generation and **fit 3D Gaussians to the uploaded views only**, so expect a "
                    "rough result. For the full pipeline start the app with `--checkpoint <exported model folder>` "
                    "or set `CAMEO_MODEL`.")
        try:
            pre = self.get()
        except ReconError:
            return (f"**No trained model available**: {self._error}. Start the app with `--checkpoint <exported "
                    "model folder>` or set `CAMEO_MODEL`.")
        return (f"Model: `{pre.path}` ({pre.image_size}x{pre.image_size} px views, {pre.frames_per_group} views per "
                f"group, device {pre.device}).")

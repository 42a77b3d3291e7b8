"""Keep the app offline: gradio analytics and Hugging Face Hub telemetry/lookups off before gradio is imported.

gradio reads ``GRADIO_ANALYTICS_ENABLED`` when it reports usage and huggingface_hub reads ``HF_HUB_OFFLINE`` /
``HF_HUB_DISABLE_TELEMETRY`` once at import time, so these must be set before the first ``import gradio``
(``app/__init__.py`` calls :func:`enforce_offline`, so importing any ``app`` module is enough).
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def enforce_offline() -> None:
    """Set :data:`OFFLINE_ENV` in this process (overriding any other value: the app never phones home)."""
    os.environ.update(OFFLINE_ENV)

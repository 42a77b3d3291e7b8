"""The Gradio web demo of cameo-recon (``cameo-app``): 1-2 posed images in, generated views + 3D Gaussians out.

Importing the package switches gradio analytics and Hugging Face Hub telemetry off before gradio is imported.
"""

from app.offline import enforce_offline

enforce_offline()

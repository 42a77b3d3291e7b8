"""Converters between outside camera formats and the internal OpenCV ``c2w`` + pixel ``K`` convention, one module
per format:

* ``nerfstudio``: ``transforms.json`` (OpenGL camera axes: x right, y up, z back), read and written; the
  reconstruction step writes one so nerfstudio can train on the generated views.
* ``cameras_npz``: 3x4 projection matrices ``P = K [R | t]`` as DTU/IDR ``cameras.npz`` ship them (``world_mat_i``,
  optional ``scale_mat_i``), split by RQ decomposition into K (positive focal lengths) and a proper rotation, and
  composed back.
* ``colmap``: COLMAP sparse models (``cameras``/``images`` as ``.txt`` or ``.bin``): world-to-camera quaternion +
  translation, already in OpenCV camera axes; lens distortion (radial-tangential, fisheye) undistorted on load.
* ``llff``: LLFF ``poses_bounds.npy``: 3x5 ``[R | t | hwf]`` camera-to-world in ``[down, right, back]`` camera axes.

Conversions happen only here (see docs/CONTRACTS.md); everything returned is OpenCV. The public names of every
format are re-exported here, so ``from cameo.importers import import_colmap`` works.
"""

from cameo.importers.cameras_npz import (
    MAX_SKEW,
    compose_projection,
    decompose_projection,
    import_cameras_npz,
    read_cameras_npz,
)
from cameo.importers.colmap import (
    COLMAP_MODELS,
    colmap_to_c2w,
    import_colmap,
    quaternion_to_rotation,
    read_colmap,
)
from cameo.importers.llff import import_llff, llff_to_opencv, read_llff
from cameo.importers.nerfstudio import (
    import_nerfstudio,
    opencv_to_opengl,
    opengl_to_opencv,
    read_nerfstudio,
    save_nerfstudio,
)

__all__ = [
    "COLMAP_MODELS",
    "MAX_SKEW",
    "colmap_to_c2w",
    "compose_projection",
    "decompose_projection",
    "import_cameras_npz",
    "import_colmap",
    "import_llff",
    "import_nerfstudio",
    "llff_to_opencv",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "quaternion_to_rotation",
    "read_cameras_npz",
    "read_colmap",
    "read_llff",
    "read_nerfstudio",
    "save_nerfstudio",
]

"""Camera paths between/around the input views and the two-pass plan for generating views along them."""

from trajectories.paths import (
    DEFAULT_TARGETS,
    CameraPath,
    choose_two_view_mode,
    default_look_at_depth,
    optical_axes_meeting_point,
    scene_path,
    single_view_path,
    two_view_path,
)
from trajectories.plan import Group, Plan, plan_generation

__all__ = [
    "DEFAULT_TARGETS",
    "CameraPath",
    "Group",
    "Plan",
    "choose_two_view_mode",
    "default_look_at_depth",
    "optical_axes_meeting_point",
    "plan_generation",
    "scene_path",
    "single_view_path",
    "two_view_path",
]

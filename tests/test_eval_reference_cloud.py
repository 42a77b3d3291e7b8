"""The evaluation's reference clouds: stereo on the scene's photos as cameo-recon runs it, exact depth, none."""

import pytest
import torch

from cameo.eval.baselines import reference_cloud, trivial_predictions
from cameo.eval.nvs import procedural_scenes


@pytest.fixture(scope="module")
def scene():
    return next(procedural_scenes(1, "object", resolution=32, photo_resolution=64))


def test_photos_are_the_same_views_at_the_photo_resolution(scene):
    photos, photo_K = scene.photos
    assert photos.shape == (4, 3, 64, 64) and scene.images.shape == (4, 3, 32, 32)
    torch.testing.assert_close(photo_K[:, :2], 2 * scene.K[:, :2])  # same cameras, twice the pixels
    small = torch.nn.functional.avg_pool2d(photos, 2)
    assert float((small - scene.images).abs().mean()) < 0.03


def test_stereo_cloud_runs_on_the_photos_when_the_scene_has_them(scene):
    refs, K, c2w = scene.images[:2], scene.K[:2], scene.c2w[:2]
    photos = (scene.photos[0][:2], scene.photos[1][:2])
    on_images = reference_cloud(refs, K, c2w, None, "stereo")
    on_photos = reference_cloud(refs, K, c2w, None, "stereo", photos)
    assert len(on_photos) > 2 * len(on_images)  # 4x the pixels to match
    # finer pixels, smaller footprints: each point's radius is half a photo pixel at its depth
    assert float(on_photos.sizes.median()) < 0.75 * float(on_images.sizes.median())
    assert reference_cloud(refs[:1], K[:1], c2w[:1], None, "stereo", photos) is None  # one photo: no stereo


def test_exact_and_no_depth_clouds(scene):
    refs, K, c2w, depth = scene.images[:2], scene.K[:2], scene.c2w[:2], scene.depth[:2]
    exact = reference_cloud(refs, K, c2w, depth, "gt")
    assert len(exact) == int((torch.isfinite(depth) & (depth > 0)).sum())
    assert reference_cloud(refs, K, c2w, depth, "none") is None
    with pytest.raises(ValueError, match="ground-truth depth"):
        reference_cloud(refs, K, c2w, None, "gt")
    warped = trivial_predictions(refs, scene.K[:2], c2w, scene.K[2:], scene.c2w[2:], {"gt": exact, "stereo": None})
    assert set(warped) == {"mean colour", "nearest reference", "warped prior (gt depth)", "warped prior (proxy plane)"}
    proxy = warped["warped prior (proxy plane)"]
    assert float((proxy - warped["mean colour"]).abs().amax(1).gt(0).float().mean()) > 0.3  # references land
    assert float((proxy - warped["nearest reference"]).abs().mean()) > 0  # warped, not copied
    assert float((warped["warped prior (gt depth)"] - scene.images[2:]).abs().mean()) < \
        float((warped["mean colour"] - scene.images[2:]).abs().mean())

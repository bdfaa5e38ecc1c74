"""Pictures: mask viewer, feature PCA, training curves and planning episodes (PIL + numpy only).

Every renderer returns a uint8 (H, W, 3) array (or a list of them for animations); write them
with ``save_png`` / ``save_gif`` / ``save_mp4``. ``tools/viz.py`` is the command line.
"""

from jepa.viz.clips import demo_clip, read_clip
from jepa.viz.curves import plot_curve, plot_metrics
from jepa.viz.masks import overlay_labels, render_mask_animation, render_mask_grid, sample_masks, token_labels
from jepa.viz.pca import patch_features, pca_components, pca_video, render_pca_animation, render_pca_strip
from jepa.viz.plan import (
    PlanEpisode,
    episode_from_result,
    episode_from_trajectories,
    load_episode,
    render_plan_animation,
    render_plan_strip,
    save_episode,
)
from jepa.viz.render import save_animation, save_gif, save_mp4, save_png

__all__ = [
    "PlanEpisode",
    "demo_clip",
    "episode_from_result",
    "episode_from_trajectories",
    "load_episode",
    "overlay_labels",
    "patch_features",
    "pca_components",
    "pca_video",
    "plot_curve",
    "plot_metrics",
    "read_clip",
    "render_mask_animation",
    "render_mask_grid",
    "render_pca_animation",
    "render_pca_strip",
    "render_plan_animation",
    "render_plan_strip",
    "sample_masks",
    "save_animation",
    "save_episode",
    "save_gif",
    "save_mp4",
    "save_png",
    "token_labels",
]

"""Training data: procedural multi-view scenes, real dataset loaders, pointmaps and sample datasets."""

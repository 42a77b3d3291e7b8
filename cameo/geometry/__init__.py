"""Geometry from the inputs: two-view stereo depth, fused point clouds and forward-warped renders."""

"""Real multi-view datasets read into :class:`~cameo.data.loaders.common.Sequence` objects (OpenCV cameras).

Each module (``realestate10k``, ``co3d``, ``dtu``, ``nerfstudio``, ``colmap``) has ``read_sequences(path)`` and
``open_dataset(path, num_views, ref_range, resolution, seed)`` returning a :class:`SequenceDataset`.
"""

"""Evaluation: offline LPIPS, image metrics, correspondence probes and the `cameo-eval` command."""

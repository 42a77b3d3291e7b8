"""cameo-train: trains the multi-view diffusion model (baseline or CAMEO) and the small latent codec."""

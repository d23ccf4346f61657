"""synthgen: synthetic image datasets from diffusion models, with provenance."""

__version__ = "0.1.0"

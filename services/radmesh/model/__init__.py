"""The text-conditioned universal segmentation model (Universal Model design)."""

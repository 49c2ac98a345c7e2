"""ioi_superpose: learn sparse combinations of attention heads that carry a behaviour."""

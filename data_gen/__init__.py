"""Data generation: the claims registry, synthetic documents per negation condition, mixing and TFDS packaging."""

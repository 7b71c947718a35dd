"""Private compiled kernels. Import through the public ``ctas7`` modules."""

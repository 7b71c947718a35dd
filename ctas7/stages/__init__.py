"""Built-in stages: TETH, the convergence meter, AXON and PRISM."""

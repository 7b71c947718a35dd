"""Simulation: synthetic streams, scenarios, Monte Carlo and Las Vegas validation."""

"""Event sources and the ground-station process."""

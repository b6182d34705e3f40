"""Local differential privacy protocols (placeholder, replaced below)."""

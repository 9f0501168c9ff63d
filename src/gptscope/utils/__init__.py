"""Small helpers shared by several areas (no model or training logic here)."""

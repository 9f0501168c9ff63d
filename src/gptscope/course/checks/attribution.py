"""Checks for lesson 8's attribution exercises (filled in by the lesson's work)."""

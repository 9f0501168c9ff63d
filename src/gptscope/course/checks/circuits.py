"""Checks for lesson 9's circuit exercises (filled in by the lesson's work)."""

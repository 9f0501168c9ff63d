"""Checks for lesson 14's exercises on reporting results (filled in by the lesson's work)."""

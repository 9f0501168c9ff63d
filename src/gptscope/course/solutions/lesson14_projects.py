"""Lesson 14: projects. No exercises to check here: make an experiment of your own.

Run ``gptscope learn new-project NAME`` for a reproducible experiment folder (config.json,
run.py, README.md with a question / method / result template, a fixed seed), run it, and
write up what you found in its README.
"""

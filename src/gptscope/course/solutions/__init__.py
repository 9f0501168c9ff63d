"""Reference solutions, one module per lesson (``lessonNN_slug``).

Each exercise is a top-level function named by its exercise id. The learner's stubs are made
from these files (signatures and docstrings kept, bodies replaced), so the text that explains
an exercise lives in one place. ``gptscope learn solution LESSON`` prints one.
"""

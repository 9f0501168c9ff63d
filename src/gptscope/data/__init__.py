"""Data for training and probing small GPTs.

- `tasks`: synthetic tasks with known answers (copy, reverse, sort, addition, modular addition,
  induction, brackets), each with a train/test split and a metric.
- `stories`: a tiny generated story corpus with sentiment, agreement and IOI labels.
- `corpus`: `TokenFile`, a text encoded once into a memory-mapped token array.
- `corpora`: bundled public-domain text (Shakespeare).
- `images`: small 8x8 image sets (generated glyphs; scikit-learn's bundled digits).
"""

from gptscope.data.corpora import load_shakespeare, shakespeare_path
from gptscope.data.corpus import TokenFile
from gptscope.data.images import digits, glyph_split, glyphs
from gptscope.data.stories import (
    Span,
    Story,
    classify_sentiment,
    generate_stories,
    label_tokens,
    sentiment_pairs,
    stories_text,
    token_labels,
)
from gptscope.data.tasks import (
    TASKS,
    AdditionTask,
    BracketsTask,
    CopyTask,
    InductionTask,
    ModularAdditionTask,
    ReverseTask,
    SortTask,
    Task,
    make_task,
    masked_targets,
    score,
)

__all__ = [
    "TASKS",
    "AdditionTask",
    "BracketsTask",
    "CopyTask",
    "InductionTask",
    "ModularAdditionTask",
    "ReverseTask",
    "SortTask",
    "Span",
    "Story",
    "Task",
    "TokenFile",
    "classify_sentiment",
    "digits",
    "generate_stories",
    "glyph_split",
    "glyphs",
    "label_tokens",
    "load_shakespeare",
    "make_task",
    "masked_targets",
    "score",
    "sentiment_pairs",
    "shakespeare_path",
    "stories_text",
    "token_labels",
]

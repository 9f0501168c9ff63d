"""Tokenizers: turn text into integer ids and back.

* :class:`CharTokenizer` - one id per character; for tiny alphabets.
* :class:`BPETokenizer` - GPT-2 style byte-level BPE; trains here, reads and
  writes Hugging Face ``tokenizer.json`` files.
* :class:`WordPieceTokenizer` - BERT's WordPiece, for reading BERT-family files.
* :func:`load_tokenizer` - open a saved tokenizer of any of these kinds.
"""

from .base import Tokenizer
from .bpe import BPETokenizer, get_pair_counts, merge_pair
from .char import CharTokenizer
from .load import load_tokenizer, tokenizer_from_dict
from .pretokenize import GPT2_PATTERN, split_gpt2
from .wordpiece import WordPieceTokenizer

__all__ = [
    "GPT2_PATTERN",
    "BPETokenizer",
    "CharTokenizer",
    "Tokenizer",
    "get_pair_counts",
    "load_tokenizer",
    "merge_pair",
    "split_gpt2",
    "tokenizer_from_dict",
    "WordPieceTokenizer",
]

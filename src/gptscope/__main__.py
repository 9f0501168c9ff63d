"""`python -m gptscope ...` (and `torchrun ... -m gptscope train ...`)."""

import sys

from gptscope.cli import main

sys.exit(main())

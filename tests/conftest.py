"""Suite-wide settings.

The models in the tests are tiny: two threads fighting over two cores for small matmuls
cost more than they give, so each test process uses one thread (GPTSCOPE_TEST_THREADS
overrides).
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("GPTSCOPE_TEST_THREADS", "1")))

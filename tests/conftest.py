"""Suite-wide settings.

The models in the tests are tiny: two threads fighting over two cores for small matmuls
cost more than they give, so each test process uses one thread (GPTSCOPE_TEST_THREADS
overrides).

torch.compile's C++ cache is kept per CPU capability: inductor's cached precompiled header
does not record the ATEN_CPU_CAPABILITY it was built under, so a suite run under
``default`` after one under ``avx512`` failed to compile (``'at::vec' has not been
declared``) until the cache was cleared.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# Shared helpers (tests/helpers.py, tests/bounds.py) import by name from any test folder.
sys.path.insert(0, str(Path(__file__).parent))

from bounds import THREADS  # noqa: E402 (needs the path above)

torch.set_num_threads(THREADS)

if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _capability = torch.backends.cpu.get_cpu_capability().lower()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"torchinductor_{os.environ.get('USER', 'user')}_{_capability}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium for the browser tests: skipped locally when missing, but a failure
    when $CI is set, so CI can never pass by skipping them. Session-scoped so a module can
    start one browser for all its tests."""
    from gptscope.viz.browser import find_chromium

    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium); required when CI is set")
    return exe

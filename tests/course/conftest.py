"""The checks compare float64 answers with tight tolerances; one torch thread keeps their
sums in one order, so a case that passes here passes on every machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

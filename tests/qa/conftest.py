"""QA tests run torch on one thread: the tiny encoders gain nothing from more, and on a
busy machine extra OpenMP threads spin-wait for cores (10-40x slower updates)."""

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Fixtures for the translation tests."""

import pytest
import torch

# Register the factory, architecture and scorer even where the installed package
# metadata (entry points) predates them; with current metadata this is a no-op.
import spacy_mbert.translation.component  # noqa: F401
import spacy_mbert.translation.architecture  # noqa: F401
import spacy_mbert.translation.scorer  # noqa: F401


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    """Run torch on one thread: on a few shared cores, torch's default thread pool
    oversubscribes them and makes these tiny models ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Fixtures of the annotate tests: a tiny textcat pipeline on disk, as annotate loads one."""

import pytest

from ..test_shared_base import pipeline_from_config
from ..test_textcat import _exclusive_examples


@pytest.fixture(scope="package")
def textcat_dir(tiny_wordpiece_dir, tmp_path_factory):
    """An initialized (untrained) textcat pipeline from configs/textcat.cfg on the tiny encoder."""
    nlp = pipeline_from_config("textcat", tiny_wordpiece_dir, base=None)
    nlp.initialize(lambda: _exclusive_examples(nlp))
    path = tmp_path_factory.mktemp("annotate") / "textcat"
    nlp.to_disk(path)
    return path

"""``spacy-mbert annotate``: run a pipeline over many files on Ray Data, nothing lost or written twice.

- :mod:`.inputs`: input files and their rows (bad rows kept, with the reason);
- :mod:`.outputs`: the fields written per doc, the JSONL/Parquet writers, the progress file;
- :mod:`.job`: the Ray Data job (read → ``map_batches`` with :class:`~.job.Annotator` → write).
"""

from .job import Summary, annotate

__all__ = ["annotate", "Summary"]

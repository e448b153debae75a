"""spacy-mbert: multilingual BERT encoders and task heads for spaCy pipelines."""

from .extensions import install_extensions

__version__ = "0.1.0"

install_extensions()

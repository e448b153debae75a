"""Fixtures for the translation tests."""

# Register the factory, architecture and scorer even where the installed package
# metadata (entry points) predates them; with current metadata this is a no-op.
import spacy_mbert.translation.architecture  # noqa: F401
import spacy_mbert.translation.component  # noqa: F401
import spacy_mbert.translation.scorer  # noqa: F401

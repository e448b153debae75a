"""Shared fixtures for the pretraining tests."""

from ..conftest import CORPUS

MULTILINGUAL = CORPUS / "raw" / "multilingual.jsonl"
ENGLISH = CORPUS / "raw" / "en.txt"

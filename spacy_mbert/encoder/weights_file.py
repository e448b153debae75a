"""Encoder weights in their own file beside a component's model file, memory-mapped on load.

spaCy saves a component's thinc model as one msgpack file, and spacy-transformers
puts the encoder's weights inside it (``torch.save`` bytes inside the shim's
msgpack inside the model's msgpack). Loading such a file holds the weights up to
four times at once: the file's bytes, the shim's bytes unpacked from them, the
weights' bytes unpacked from those, and the tensors read from them (4-5x the
weights' size at the peak of ``spacy.load``, and seconds of copying).

In ``to_disk``/``from_disk`` the components of this package write the weights as
a separate file (``torch.save`` format, :data:`WEIGHTS_FILE`) and keep only its
name and SHA-256 in the model file. Loading memory-maps that file and makes the
mapped tensors the model's parameters, as Hugging Face's ``from_pretrained`` does
with safetensors: pages are read when first used, nothing is copied, and the peak
is about one copy of the weights. ``to_bytes``/``from_bytes`` keep the weights
inline (there is no directory), so the pipeline bytes stay self-contained.
"""

import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional

import torch
from thinc.api import Model

from ..errors import WeightsChecksumError, corrupted_file_errors

# The file beside a component's "model" file.
WEIGHTS_FILE = "model.weights.pt"
# Keys in the shim's saved dict when the weights are in the side file.
WEIGHTS_FILE_KEY = "weights_file"


@contextmanager
def weights_beside(model: Model, model_file: Path) -> Iterator[None]:
    """Let every MBertShim in ``model`` save/load its weights beside ``model_file``.

    model (Model): A component's thinc model.
    model_file (Path): The component's model file (``<component dir>/model``).
    """
    shims = [shim for node in model.walk() for shim in node.shims if hasattr(shim, "weights_path")]
    for i, shim in enumerate(shims):
        # One file per shim; a component has one encoder, so nearly always just WEIGHTS_FILE.
        name = WEIGHTS_FILE if i == 0 else f"model.weights.{i}.pt"
        shim.weights_path = Path(model_file).parent / name
    try:
        yield
    finally:
        for shim in shims:
            shim.weights_path = None


def save_state(state: Dict[str, torch.Tensor], path: Path) -> str:
    """Write a state dict to ``path`` (atomically); returns the file's SHA-256.

    Written to a temporary file and renamed over ``path``, so a pipeline that was
    loaded from this directory (its weights memory-mapped from the old file) can
    be saved back to it safely: the mapping keeps the old file alive.
    """
    path = Path(path)
    temp = path.with_name(path.name + ".tmp")
    torch.save(state, temp)
    digest = file_sha256(temp)
    os.replace(temp, path)
    return digest


def read_state(path: Path, *, device, check: "ChecksumCheck") -> Dict[str, torch.Tensor]:
    """Memory-map a state dict written by :func:`save_state`; ``check`` runs alongside.

    Call ``check.verify()`` before using the tensors. If the file cannot be read,
    a checksum mismatch is reported rather than the reader's error (it names the cause).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsChecksumError(
            f"is missing its weights file {path}; copy the whole pipeline directory, or re-save the pipeline"
        )
    mmap = torch.device(device).type == "cpu"
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except Exception:
        check.verify()
        raise


# Set to 0 to skip the checksum at load: reading and hashing the whole file is most
# of spacy.load's time for a large encoder (~1.4 s for M-BERT-base's 711 MB here,
# where building the pipeline takes ~0.3 s). Saving always writes the checksum.
VERIFY_ENV = "SPACY_MBERT_VERIFY_WEIGHTS"


def verification_enabled() -> bool:
    return os.environ.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class ChecksumCheck:
    """The SHA-256 of a weights file, computed on a background thread while loading goes on.

    hashlib releases the GIL while it hashes, so on a machine with two or more cores
    reading and hashing the file (~0.8 s for 470 MB here) overlaps with rebuilding the
    tokenizer and the network instead of adding to ``spacy.load``'s time. Skipped
    when the environment variable ``SPACY_MBERT_VERIFY_WEIGHTS`` is ``0``.
    """

    def __init__(self, path: Path, expected_sha256: Optional[str]):
        self.path = Path(path)
        self.expected = expected_sha256
        self._found: Optional[str] = None
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        if expected_sha256 is not None and self.path.is_file() and verification_enabled():
            self._thread = threading.Thread(target=self._run, name="spacy-mbert-sha256", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._found = file_sha256(self.path)
        except BaseException as error:  # re-raised by verify(), in the loading thread
            self._error = error

    def verify(self) -> None:
        """Wait for the checksum; raise WeightsChecksumError if the file is not the one saved."""
        if self._thread is None:
            return
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._found != self.expected:
            raise WeightsChecksumError(
                f"is corrupted: {self.path} does not match the SHA-256 saved with it (expected "
                f"{str(self.expected)[:12]}…, found {str(self._found)[:12]}…), so bytes changed after saving "
                f"(disk or transfer error); re-save or re-download the pipeline."
            )


def file_sha256(path: Path, chunk: int = 1 << 24) -> str:
    """SHA-256 of a file, read in chunks (the pages are not mapped into this process)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class OwnEncoderSerialization:
    """``to_disk``/``from_disk``/``from_bytes`` of a pipe that owns its encoder (``mbert_qa``, ``mbert_translator``).

    The encoder's weights go to their own file on disk (memory-mapped on load), and
    a damaged file gives one line naming it and the fix. Mix in before ``TrainablePipe``.
    """

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()):
        with corrupted_file_errors(f"The '{self.name}' component's model file"):
            return super().from_bytes(bytes_data, exclude=exclude)

    def from_disk(self, path, *, exclude=tuple()):
        model_file = Path(path) / "model"
        with corrupted_file_errors(f"The '{self.name}' component's model file ({model_file})"):
            with weights_beside(self.model, model_file):
                return super().from_disk(path, exclude=exclude)

    def to_disk(self, path, *, exclude=tuple()) -> None:
        with weights_beside(self.model, Path(path) / "model"):
            super().to_disk(path, exclude=exclude)

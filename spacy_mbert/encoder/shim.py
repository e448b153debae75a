"""``MBertShim``: spacy-transformers' HFShim with bounded, length-sorted prediction and checked weights.

The differences from ``HFShim``:

- serialization works for checkpoints whose tokenizer is only a ``tokenizer.json``
  (XLM-R vocabularies such as multilingual-e5), on which spacy-transformers 1.4
  opens ``None`` as a vocab file;
- the saved weights carry a SHA-256, inline (``to_bytes``) or in their own
  memory-mapped file beside the component's model file (``weights_file.py``),
  so changed bytes fail with one line instead of loading as other weights;
- prediction runs the windows of a batch at most ``max_windows_per_pass`` at a
  time, optionally sorted by length (``length_sorted_rows``), so a long doc does
  not need activation memory in proportion to its length;
- ``finish_update`` hands the whole network to ``spacy-mbert.AdamW.v1`` (one torch
  AdamW step), and a network converted by ``spacy-mbert quantize`` (``quantized``)
  is saved and rebuilt that way (quantize.py).
"""

import hashlib
from io import BytesIO
from pathlib import Path
from typing import Dict, Optional

import srsly
import torch
from spacy.util import SimpleFrozenDict
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.util import make_tempdir
from thinc.api import ArgsKwargs, get_torch_default_device, torch2xp, xp2torch

from ..batching import length_batches
from ..errors import UserError, WeightsChecksumError, first_line
from ..optimizer import TorchAdamW
from .loading import vocab_file_contents
from .quantize import (
    INT8_DYNAMIC,
    cpu_autocast,
    loaded_state,
    outputs_in_fp32,
    quantize_network,
    quiet_quantized,
    require_cpu,
    saved_state,
)
from .rows import batch_rows, concat_rows, pad_sequence_dim, slice_rows, take_output_rows, take_rows
from .weights_file import WEIGHTS_FILE_KEY, ChecksumCheck, read_state, save_state

# Key of the weights' SHA-256 (hex) in the saved shim dict, next to "state".
WEIGHTS_CHECKSUM_KEY = "state_sha256"
# Key of the quantization scheme, when the weights are quantized.
QUANTIZED_KEY = "quantized"


class MBertShim(HFShim):
    """HFShim whose serialization works for tokenizer.json-only checkpoints.

    The saved dict has the keys of spacy-transformers' HFShim plus the weights'
    checksum (and, on disk, the name of the weights file). Pass ``model_cls`` (e.g. ``AutoModelForQuestionAnswering``)
    to wrap a model with a task head; the head's weights are saved with the rest.

    In prediction, the windows of a batch go through the encoder at most
    ``max_windows_per_pass`` at a time: spacy-transformers runs all the windows of
    a batch in one pass, so a single long doc (a 100,000-character doc has ~200-1,000
    windows) would need activation memory in proportion to its length. The outputs
    are the same, concatenated.
    """

    max_windows_per_pass: int = 64
    # > 0: sort the windows by length and run them this many at a time, each group
    # cut to its own longest window (see ``_predict_by_length``). Set by
    # MBertTransformerModel; task models that pad per length-sorted batch themselves
    # (QA) leave it off.
    length_sorted_rows: int = 0
    # Set by weights_file.weights_beside during a component's to_disk/from_disk: the
    # weights then live in this file instead of inside the model bytes.
    weights_path: Optional[Path] = None
    # The quantization scheme of the network (quantize.py), saved with it; None: fp32.
    quantized: Optional[str] = None

    def predict(self, inputs: ArgsKwargs):
        with cpu_autocast(self.quantized):
            return outputs_in_fp32(self._predict(inputs))

    def _predict(self, inputs: ArgsKwargs):
        n_rows = batch_rows(inputs)
        with torch.inference_mode():
            if self.length_sorted_rows > 0 and n_rows > 1 and self._right_padded(inputs):
                return self._predict_by_length(inputs, n_rows)
            step = self.max_windows_per_pass
            if n_rows <= step:
                return super().predict(inputs)
            outputs = []
            for start in range(0, n_rows, step):
                outputs.append(super().predict(slice_rows(inputs, start, start + step, n_rows)))
            return concat_rows(outputs)

    def begin_update(self, inputs: ArgsKwargs):
        if self.quantized is not None:
            raise UserError(
                f"This encoder is quantized for inference ({self.quantized}, spacy-mbert quantize) and cannot be "
                f"trained; train the fp32 pipeline it was made from, then quantize the result."
            )
        return super().begin_update(inputs)

    def finish_update(self, optimizer) -> None:
        """Step the network with its gradients, then clear them.

        ``spacy-mbert.AdamW.v1`` (``TorchAdamW``) steps the whole network in torch; any
        other thinc optimizer gets one tensor at a time, as thinc's ``PyTorchShim`` does.
        A step whose mixed-precision gradients overflowed is skipped.
        """
        skip = bool(self._grad_scaler.found_inf)
        if isinstance(optimizer, TorchAdamW):
            optimizer.step_network(self.id, self._model, lr_scale=self.lr_scale, skip=skip)
        else:
            for name, tensor in self._model.named_parameters():
                if tensor.grad is None:
                    continue  # frozen (a shared base's tensors, frozen embeddings)
                if not skip:
                    param, _ = optimizer(
                        (self.id, name), torch2xp(tensor.data), torch2xp(tensor.grad), lr_scale=self.lr_scale(name)
                    )
                    tensor.data = xp2torch(param, requires_grad=True, device=tensor.device)
                tensor.grad.zero_()
        self._grad_scaler.update()

    def quantize(self, scheme: str) -> None:
        """Convert the network for ``scheme``: int8 linear layers, or bf16 (autocast at inference; quantize.py)."""
        require_cpu(scheme, self.device, "This encoder")
        network = quantize_network(self._model.eval(), scheme)
        objects = self._hfmodel
        self._model = network
        self._hfmodel = HFObjects(
            objects.tokenizer,
            network,
            objects.vocab_file_contents,
            objects._init_tokenizer_config,
            objects._init_transformer_config,
        )
        self.quantized = scheme

    def lr_scale(self, name: str) -> float:
        """Learning-rate factor of parameter ``name`` (1; a head on a base scales its adapter)."""
        return 1.0

    def _right_padded(self, inputs: ArgsKwargs) -> bool:
        mask = inputs.kwargs.get("attention_mask")
        tokenizer = self._hfmodel.tokenizer
        return (
            isinstance(mask, torch.Tensor)
            and mask.dim() == 2
            and getattr(tokenizer, "padding_side", "right") == "right"
        )

    def _predict_by_length(self, inputs: ArgsKwargs, n_rows: int):
        """Run the windows longest first, in groups padded only to their own longest window.

        spacy-transformers pads every window of a batch to the batch's longest one,
        so a batch of sentences of mixed length spends up to half its time on
        padding. The outputs are put back in input order and padded with zeros to
        the batch's width (spacy-transformers never reads padded positions).
        """
        mask = inputs.kwargs["attention_mask"]
        width = mask.shape[1]
        lengths = [int(n) for n in mask.sum(dim=1).tolist()]
        step = min(self.length_sorted_rows, self.max_windows_per_pass)
        batches = length_batches(lengths, step, longest_first=True)
        outputs = []
        for batch in batches:
            rows = torch.tensor(batch, dtype=torch.long)
            group_width = max(1, max(lengths[row] for row in batch))
            group = take_rows(inputs, rows, n_rows, width, group_width)
            outputs.append(pad_sequence_dim(HFShim.predict(self, group), group_width, width))
        joined = concat_rows(outputs)
        order = torch.tensor([row for batch in batches for row in batch], dtype=torch.long)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n_rows)
        return take_output_rows(joined, inverse, n_rows)

    def to_bytes(self) -> bytes:
        hf_model = self._hfmodel
        if hf_model.transformer is None:
            return super().to_bytes()
        tokenizer = hf_model.tokenizer
        tok_dict: Dict[str, object] = {"kwargs": {"use_fast": tokenizer.is_fast}}
        with make_tempdir() as temp_dir:
            if hf_model.vocab_file_contents is not None and hasattr(tokenizer, "vocab_file"):
                # Slow-tokenizer vocab files may live in a cache that is gone by now.
                vocab_path = temp_dir / tokenizer.vocab_files_names["vocab_file"]
                vocab_path.write_bytes(hf_model.vocab_file_contents)
                tokenizer.vocab_file = str(vocab_path)
            tokenizer.save_pretrained(str(temp_dir))
            for path in temp_dir.glob("**/*"):
                if path.is_file():
                    tok_dict[path.name] = path.read_bytes()
        msg = {
            "config": hf_model.transformer.config.to_dict(),
            "tokenizer": tok_dict,
            "_init_tokenizer_config": {},
            "_init_transformer_config": {},
        }
        if self.quantized is not None:
            msg[QUANTIZED_KEY] = self.quantized
        if self.weights_path is not None:
            # to_disk of this package's components: the weights go to their own file.
            msg["state"] = None
            msg[WEIGHTS_FILE_KEY] = self.weights_path.name
            msg[WEIGHTS_CHECKSUM_KEY] = save_state(saved_state(self._model, self.quantized), self.weights_path)
        else:
            weights = BytesIO()
            torch.save(saved_state(self._model, self.quantized), weights)
            msg["state"] = weights.getvalue()
            # Checked by from_bytes: bytes changed on disk or in transfer would
            # otherwise load as (slightly) different weights without any error.
            msg[WEIGHTS_CHECKSUM_KEY] = hashlib.sha256(msg["state"]).hexdigest()
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "MBertShim":
        try:
            msg = srsly.msgpack_loads(bytes_data)
            config_dict, tok_dict = msg["config"], dict(msg["tokenizer"])
        except Exception as error:  # msgpack raises several unrelated types
            raise UserError(
                f"The transformer weights are corrupted or truncated ({type(error).__name__}: "
                f"{first_line(error)}); re-save or re-download the pipeline."
            ) from None
        if not config_dict:
            self._hfmodel = HFObjects(None, None, None, msg["_init_tokenizer_config"], msg["_init_transformer_config"])
            return self
        # Weights in their own file: their checksum is computed alongside what follows.
        check = _start_weights_check(self, msg) if msg.get(WEIGHTS_FILE_KEY) else None
        with make_tempdir() as temp_dir:
            config_file = temp_dir / "config.json"
            srsly.write_json(config_file, config_dict)
            config = self.config_cls.from_pretrained(str(config_file))
            tok_kwargs = tok_dict.pop("kwargs", {})
            for file_name, data in tok_dict.items():
                (temp_dir / file_name).write_bytes(data)
            tokenizer = self.tokenizer_cls.from_pretrained(str(temp_dir), **tok_kwargs)
            vocab_contents = vocab_file_contents(tokenizer)
        device = get_torch_default_device()
        quantized = msg.get(QUANTIZED_KEY)
        require_cpu(quantized, device, "This pipeline's encoder")
        with quiet_quantized(quantized):
            if check is not None:
                state = _read_weights_file(check, device)
            else:
                check_weights_checksum(msg)
                state = None
            try:
                if state is None:
                    # pop: the serialized weights are freed as soon as they are read.
                    state = torch.load(BytesIO(msg.pop("state")), map_location=device, weights_only=True)
                transformer = _build_with_weights(self.model_cls, config, state, quantized=quantized, device=device)
            except Exception as error:
                if check is not None:
                    check.verify()  # changed bytes explain a failure best
                raise UserError(
                    f"The transformer weights in this pipeline could not be read ({type(error).__name__}: "
                    f"{first_line(error)}); the file is corrupted, truncated or from an incompatible "
                    f"model. Re-save or re-download the pipeline."
                ) from None
        if check is not None:
            check.verify()
        transformer.to(device)
        self.quantized = quantized
        self._model = transformer
        self._hfmodel = HFObjects(tokenizer, transformer, vocab_contents, SimpleFrozenDict(), SimpleFrozenDict())
        return self


def _start_weights_check(shim: "MBertShim", msg: Dict) -> ChecksumCheck:
    """Start checking the weights file of a shim saved by a component's to_disk (see weights_file.py)."""
    if shim.weights_path is None:
        raise UserError(
            f"These weights were saved to a separate file ({msg[WEIGHTS_FILE_KEY]}) by to_disk, so they "
            f"load only from the pipeline directory: use spacy.load(path) or from_disk(path), not from_bytes."
        )
    return ChecksumCheck(shim.weights_path.parent / str(msg[WEIGHTS_FILE_KEY]), msg.get(WEIGHTS_CHECKSUM_KEY))


def _read_weights_file(check: ChecksumCheck, device) -> Dict[str, torch.Tensor]:
    """The weights of the file ``check`` is checking, memory-mapped."""
    try:
        return read_state(check.path, device=device, check=check)
    except UserError:
        raise
    except Exception as error:  # torch raises many unrelated types for a damaged zip
        raise UserError(
            f"The transformer weights file {check.path} could not be read ({type(error).__name__}: "
            f"{first_line(error)}); it is corrupted or truncated. Re-save or re-download the pipeline."
        ) from None


def _build_with_weights(
    model_cls, config, state: Dict[str, torch.Tensor], *, quantized: Optional[str] = None, device="cpu"
):
    """The network of ``config`` whose parameters *are* the loaded tensors.

    Building it normally would first fill every parameter with random values (a
    second copy of the weights, and seconds of work for a large model) only to
    overwrite them. Instead the parameters are left unfilled and the loaded
    tensors are assigned to them; ties between weights (an output layer tied to
    the word embeddings, BERTShare) are then restored, since assigning replaces
    the tied parameter objects one by one.
    """
    from transformers.modeling_utils import no_init_weights

    cls = _model_class(model_cls, config)
    with no_init_weights():
        transformer = cls._from_config(config) if cls is not model_cls else model_cls.from_config(config)
    if quantized == INT8_DYNAMIC:
        # int8 layers first (quantizing the unfilled weights), then their saved int8 weights;
        # ties are not restored: a quantized output layer holds its own int8 copy.
        transformer = quantize_network(transformer, quantized)
        transformer.load_state_dict(state)
        return transformer
    transformer.load_state_dict(loaded_state(state, quantized, device), assign=True)
    after_load = getattr(model_cls, "after_load", None)
    if after_load is not None:
        after_load(transformer)
    if hasattr(transformer, "tie_weights"):
        transformer.tie_weights()
    return transformer


def _model_class(model_cls, config):
    """The class ``model_cls.from_config(config)`` would build.

    An auto class (``AutoModel``) finds it by asking its mapping for every model
    type it knows, which imports ~700 modules of transformers (1 s); asking for
    the config's type imports only that model's module.
    """
    mapping = getattr(model_cls, "_model_mapping", None)
    if mapping is None:
        return model_cls
    try:
        from transformers.models.auto.auto_factory import _get_model_class

        return _get_model_class(config, mapping)
    except (ImportError, KeyError, ValueError):
        return model_cls


def check_weights_checksum(msg: Dict) -> None:
    """Raise WeightsChecksumError when the saved weights are not the bytes that were saved.

    msg (Dict): A shim's saved dict. Files saved before checksums were added have
        none and are not checked.
    """
    expected = msg.get(WEIGHTS_CHECKSUM_KEY)
    if expected is None:
        return
    state = msg.get("state")
    found = hashlib.sha256(state).hexdigest() if isinstance(state, bytes) else "missing"
    if found != expected:
        raise WeightsChecksumError(
            "is corrupted: its weights do not match the SHA-256 checksum saved with them (expected "
            f"{str(expected)[:12]}…, found {found[:12]}…), so bytes changed after saving (disk or transfer "
            "error); re-save or re-download the pipeline."
        )

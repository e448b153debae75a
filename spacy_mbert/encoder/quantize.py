"""Faster CPU inference: the encoders' linear layers in bf16 or int8.

``spacy-mbert quantize PIPELINE OUTPUT --dtype {bf16,int8}`` (:func:`quantize_pipeline`)
rewrites every encoder a component owns (``transformer``, ``mbert_qa``,
``mbert_translator``); the saved shim records the scheme (``"quantized"``), so
``spacy.load`` rebuilds the network that way and nothing is converted again at load.

- ``bf16``: the linear layers (weights and biases) are stored, and kept in memory, in
  bfloat16 (the embeddings and LayerNorms stay fp32) and inference runs under CPU autocast to bfloat16
  (matrix products in bf16 with fp32 accumulation, softmax and normalisation in fp32).
  Keeping the weights in bf16 rather than fp32 halves their memory and spares autocast
  casting every weight again in every forward pass (~10% of a pass of sentences on
  e5-small). Fast where the CPU has native bf16 (AVX512-BF16, AMX); elsewhere it is
  emulated and slow. On a GPU the weights are loaded back in fp32.
- ``int8``: ``torch.ao.quantization.quantize_dynamic``: int8 weights (per tensor) and
  activations quantized per batch on the fly (fbgemm's VNNI kernels).

Which one, measured here (2-core Xeon with VNNI and AVX512-BF16, e5-small, batches of 32):
bf16 is both the faster and the more accurate on these encoders: on the trained XQuAD QA
model (96 test questions) bf16 autocast lost 0.7 F1 at 2.5x the fp32 speed, int8 lost
21 F1 (11 with per-channel weights, 3 with the FFN down-projections left fp32), because one
int8 scale per activation tensor cannot hold the transformer's outlier activations. torchao
0.18's ``Int8DynamicActivationInt8WeightConfig`` (per-token scales, accurate) ran at 0.94x
fp32 in eager mode. torch 2.13 also marks torch.ao quantization and quantized tensors as
deprecated (their warnings are silenced here); bf16 is the default. The figures of the
committed runs are in benchmarks/results/speed.md.
"""

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch

from ..errors import UserError

# The shim's saved markers.
BF16 = "bf16"
INT8_DYNAMIC = "int8-dynamic"
SCHEMES = {"bf16": BF16, "int8": INT8_DYNAMIC}


def quantize_network(network: torch.nn.Module, scheme: str = INT8_DYNAMIC) -> torch.nn.Module:
    """``network`` ready for ``scheme``: int8 layers (a new module), or as it is for bf16 (autocast at inference)."""
    if scheme not in SCHEMES.values():
        raise UserError(f"Unknown quantization '{scheme}'; use one of: {', '.join(SCHEMES)}.")
    if scheme == BF16:
        for module in network.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(torch.bfloat16)
        return network
    with quiet_quantized(scheme):
        return torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)


def saved_state(network: torch.nn.Module, scheme: Optional[str]) -> Dict[str, torch.Tensor]:
    """The state dict to save: bf16 stores the linear layers in bfloat16, as ``quantize_network`` converts them
    (also for a bf16 network loaded back in fp32 on a GPU)."""
    state = network.state_dict()
    if scheme != BF16:
        return state
    linear = {
        f"{name}.{param}"
        for name, module in network.named_modules()
        if isinstance(module, torch.nn.Linear)
        for param, _ in module.named_parameters(recurse=False)
    }
    return {key: value.to(torch.bfloat16) if key in linear else value for key, value in state.items()}


def loaded_state(state: Dict[str, torch.Tensor], scheme: Optional[str], device) -> Dict[str, torch.Tensor]:
    """The state dict to build the network from: bf16 weights as they are on the CPU (autocast runs them),
    back in fp32 on any other device (where the network runs as it was trained)."""
    if scheme != BF16 or torch.device(device).type == "cpu":
        return state
    return {key: value.float() if value.dtype == torch.bfloat16 else value for key, value in state.items()}


def cpu_autocast(scheme: Optional[str]):
    """Autocast to bfloat16 for a bf16 network on the CPU; a no-op context otherwise."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=scheme == BF16)


def outputs_in_fp32(output):
    """``output`` (a model output, tuple or tensor) with its bfloat16 tensors in float32 (NumPy has no bf16)."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype == torch.bfloat16 else output
    if isinstance(output, dict):  # transformers' ModelOutput
        for key in list(output.keys()):
            output[key] = outputs_in_fp32(output[key])
        return output
    if isinstance(output, tuple):
        return tuple(outputs_in_fp32(item) for item in output)
    return output


@contextmanager
def quiet_quantized(scheme: Optional[str]) -> Iterator[None]:
    """Without torch's deprecation warnings for torch.ao quantization and quantized tensors
    (see the module docstring), which would otherwise print on every ``spacy.load``."""
    if scheme != INT8_DYNAMIC:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*(quantiz|TypedStorage).*")
        yield


def require_cpu(scheme: Optional[str], device, what: str) -> None:
    """int8 layers run on the CPU only: one line saying so, on any other device."""
    if scheme == INT8_DYNAMIC and torch.device(device).type != "cpu":
        raise UserError(
            f"{what} is int8-quantized, which runs on the CPU only; load the fp32 pipeline it was made from "
            f"to run on the GPU."
        )


def quantize_pipeline(pipeline: str, output: Path, *, dtype: str = "bf16") -> List[str]:
    """Load ``pipeline``, convert every encoder its components own to ``dtype`` (bf16, int8), save it to ``output``.

    RETURNS (List[str]): The names of the components whose encoders were quantized.
    """
    import spacy

    from .base import SharedBase
    from .on_base import OnBaseShim
    from .shim import MBertShim

    if dtype not in SCHEMES:
        raise UserError(f"Unknown --dtype '{dtype}'; use one of: {', '.join(SCHEMES)}.")
    scheme = SCHEMES[dtype]

    nlp = spacy.load(pipeline)
    quantized = []
    for name, component in nlp.pipeline:
        model = getattr(component, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                if not isinstance(shim, MBertShim) or shim._model is None:
                    continue
                if isinstance(shim, OnBaseShim) or isinstance(component, SharedBase):
                    raise UserError(
                        f"'{name}' runs on the shared base encoder with a LoRA adapter, which quantize does "
                        f"not handle yet; quantize a pipeline whose heads own their encoder (trained with base = null)."
                    )
                if shim.quantized is None:
                    shim.quantize(scheme)
                    quantized.append(name)
    if not quantized:
        raise UserError(f"{pipeline} has no encoder to quantize (no transformer, mbert_qa or mbert_translator).")
    nlp.to_disk(output)
    return quantized

"""Task networks built on a shared base encoder's frozen weights, with a LoRA adapter from ``peft``.

A head in "base" mode does not load its own copy of the encoder: its network
(``AutoModelForQuestionAnswering``, ``AutoModel``, ...) is built empty, and the
part that is the encoder gets the *same tensors* as the pipeline's ``mbert_base``
component (no copy in memory, none on disk). Those tensors are frozen; what the
head trains is its own layers (the QA start/end layer, a pooler the base lacks)
and, when ``adapter`` is set, a LoRA adapter that Hugging Face ``peft`` injects
into the network (``inject_adapter_in_model``: the network keeps its class and
forward; only the targeted linear layers gain the low-rank update).

What a head saves is :func:`own_state`: every tensor of its network that is not
one of the base's, i.e. its adapter and its own layers.
"""

import hashlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Set

import torch
from spacy.util import registry

from ..errors import UserError

# Gets the part of a task network that is the base encoder (``network.base_model``
# for the Hugging Face task classes, the network itself for ``AutoModel``).
BaseOf = Callable[[torch.nn.Module], torch.nn.Module]


@dataclass
class LoRASettings:
    """What ``spacy-mbert.LoRA.v1`` gives: the adapter's settings, made a ``peft.LoraConfig`` when used.

    peft is imported only then (it takes seconds): a pipeline whose heads fine-tune their
    own copy (``base = null``) resolves this section of its config without it.
    """

    rank: int
    alpha: int
    dropout: float
    target_modules: List[str]
    learn_rate_scale: float = 1.0

    def peft_config(self, exclude_modules=None):
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            exclude_modules=exclude_modules,
            bias="none",
        )


@registry.misc("spacy-mbert.LoRA.v1")
def LoRA(
    *,
    rank: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: List[str] = ["query", "value"],
    learn_rate_scale: float = 10.0,
) -> LoRASettings:
    """LoRA settings for a head on the shared base (Hugging Face ``peft``'s ``LoraConfig``).

    rank (int): Rank of each low-rank update (``r``); the adapter's size grows with it.
    alpha (int): Scale of the update (``lora_alpha``); the update is multiplied by alpha / rank.
    dropout (float): Dropout on the adapter's input in training (``lora_dropout``). 0 by
        default, as in peft: the encoder's own dropout still applies, and on CPU this
        dropout (one random mask per adapted layer and step) was a quarter of a LoRA
        textcat step on e5-small.
    target_modules (List[str]): Names of the linear layers that get an adapter, matched
        against the end of each module's name ("query", "value" in BERT and XLM-R
        self-attention; "key" and "dense" add the rest of attention and the feed-forward layers).
    learn_rate_scale (float): The adapter's weights step at this many times the
        optimizer's learning rate (the head's own layers at 1x). LoRA is usually trained
        at about 10x the rate of full fine-tuning (e.g. 5e-4 against 5e-5), so with 10 one
        config and schedule serve both ways of training a head.
    """
    if rank < 1:
        raise UserError(f"LoRA rank must be at least 1 (got {rank}); set e.g. rank = 8.")
    if not target_modules:
        raise UserError('LoRA target_modules is empty; set e.g. target_modules = ["query","value"].')
    if learn_rate_scale <= 0:
        raise UserError(f"LoRA learn_rate_scale must be positive (got {learn_rate_scale}); set e.g. 10.")
    return LoRASettings(int(rank), int(alpha), float(dropout), list(target_modules), float(learn_rate_scale))


def fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of a network's weights (names, dtypes, shapes and bytes), in state-dict order.

    Two heads can share a base only if they were trained on the same weights; this
    is what is compared, whatever file format or directory the weights came from.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode("utf8"))
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def share_base(part: torch.nn.Module, base: torch.nn.Module) -> torch.nn.Module:
    """Make ``part``'s tensors the base's, wherever both have one of the same name and shape.

    part (torch.nn.Module): The part of a task network with the base's architecture (its
        encoder; the translator's decoder body too, BERTShare-style), built without
        initializing its weights.
    base (torch.nn.Module): The shared base encoder (``mbert_base``'s network).
    RETURNS (torch.nn.Module): ``part``. ``assign=True``: its parameters become new
        Parameter objects over the base's storage (shared memory, no copy).
    """
    own = part.state_dict(keep_vars=True)
    shared = {
        name: tensor
        for name, tensor in base.state_dict(keep_vars=True).items()
        if name in own and own[name].shape == tensor.shape
    }
    part.load_state_dict(shared, strict=False, assign=True)
    return part


def init_own_layers(network: torch.nn.Module, base: torch.nn.Module) -> torch.nn.Module:
    """Initialize (as Hugging Face initializes new layers) every layer of ``network`` that is not the base's."""
    shared = base_pointers(base)
    for module in network.modules():
        own = [p for p in module.parameters(recurse=False) if p.data_ptr() not in shared]
        if own and hasattr(network, "_init_weights"):
            network._init_weights(module)
    return network


def add_adapter(network: torch.nn.Module, base: torch.nn.Module, adapter=None, exclude_modules=None):
    """Inject the LoRA adapter (``peft``) and freeze the base's tensors; the rest stays trainable.

    adapter (Optional[LoRASettings]): LoRA settings; None trains only the head's own layers.
    exclude_modules (Optional[List[str]]): Modules the adapter must not wrap (layers the
        head trains fully anyway, e.g. the translator's cross-attention).
    RETURNS (torch.nn.Module): ``network``, changed in place.
    """
    if adapter is not None:
        from peft import inject_adapter_in_model

        network = inject_adapter_in_model(adapter.peft_config(exclude_modules), network)
    shared = base_pointers(base)
    for parameter in network.parameters():
        # Trainable: the adapter and the head's own layers; never the base's tensors.
        parameter.requires_grad_(parameter.data_ptr() not in shared)
    return network


def is_adapter_weight(name: str) -> bool:
    """Whether a parameter (by its name in the network) belongs to a peft LoRA adapter."""
    return ".lora_" in name


def base_pointers(base: torch.nn.Module) -> Set[int]:
    """The storage addresses of the base's tensors (how a network's shared tensors are told apart)."""
    return {tensor.data_ptr() for tensor in base.state_dict(keep_vars=True).values()}


def own_state(network: torch.nn.Module, base: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors of ``network`` that are not the base's: its adapter and its own layers."""
    shared = base_pointers(base)
    return {name: tensor for name, tensor in network.state_dict().items() if tensor.data_ptr() not in shared}


def load_own_state(network: torch.nn.Module, state: Dict[str, torch.Tensor], *, what: str) -> None:
    """Load what :func:`own_state` saved; every other tensor must be the base's.

    what (str): Names the model in the error (e.g. "The 'mbert_qa' model").
    """
    missing, unexpected = network.load_state_dict(state, strict=False)
    if unexpected:
        raise UserError(
            f"{what}'s saved adapter does not fit its network (unexpected weights such as "
            f"'{unexpected[0]}'): the adapter settings in the config differ from those it was trained with."
        )
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    absent = sorted(trainable & set(missing))
    if absent:
        raise UserError(
            f"{what}'s saved adapter lacks weights such as '{absent[0]}': the adapter settings in the config "
            f"differ from those it was trained with."
        )

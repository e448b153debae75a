"""``OnBaseShim``: the shim of a head whose encoder is the pipeline's shared ``mbert_base``.

The head's network is built on the base's tensors (:func:`~.adapters.share_base`)
once the base is there: at ``initialize`` (new own layers and adapter), or after
loading (the saved ones); then ``peft`` adds the adapter (:func:`~.adapters.add_adapter`). spaCy tells the base about its heads when it links the pipeline's
components (``find_listeners``, as for ``transformer`` listeners), on every
``spacy.load``, ``nlp.initialize`` and ``spacy assemble``; the base then calls
:meth:`OnBaseShim.attach`. A head moved onto another base (sourced into a new
pipeline) is rebuilt on the new base's tensors, and refused with one line when
those are not the weights it was trained on.

Saved: the network's config, the head's own tensors (adapter and own layers,
with a SHA-256) and which base they belong to (its component name, checkpoint
name and weights fingerprint). Not saved: the base's weights and tokenizer.
"""

import hashlib
from io import BytesIO
from typing import Callable, Dict, Optional, Tuple

import srsly
import torch
from spacy_transformers.data_classes import HFObjects
from thinc.api import get_torch_default_device

from ..errors import UserError, first_line
from .adapters import BaseOf, add_adapter, init_own_layers, is_adapter_weight, load_own_state, own_state, share_base
from .shim import WEIGHTS_CHECKSUM_KEY, MBertShim, check_weights_checksum

# Key of the base description in the saved dict (its presence marks a head on a base).
ON_BASE_KEY = "on_base"

# rebuild(config, base network) -> the task network of a saved config, its base part
# sharing the base's tensors, its own layers not initialized (their values are loaded next).
Rebuild = Callable[[object, torch.nn.Module], torch.nn.Module]
# build(base component) -> a new task network on the base, its own layers initialized.
BuildNew = Callable[[object], torch.nn.Module]


class OnBaseShim(MBertShim):
    """An ``MBertShim`` whose network shares the frozen weights of an ``mbert_base`` component.

    base_upstream (str): Name of the ``mbert_base`` component in the pipeline.
    rebuild (Rebuild): The task's network for a saved config, on the base.
    adapter (Optional[LoRASettings]): The head's LoRA settings; None trains only its own layers.
    exclude_modules (Optional[list]): Modules the adapter must not wrap.
    """

    def __init__(
        self,
        hf_objects: HFObjects,
        *,
        base_upstream: str,
        rebuild: Rebuild,
        adapter=None,
        exclude_modules=None,
        **kwargs,
    ):
        super().__init__(hf_objects, **kwargs)
        self.base_upstream = base_upstream
        self.rebuild = rebuild
        self.adapter = adapter
        self.exclude_modules = exclude_modules
        # The SharedBase component (set by spaCy's linking), the base the network was
        # built on, and saved state waiting for the base.
        self.base = None
        self._built_on = None
        self._pending: Optional[Tuple[Dict, Dict[str, torch.Tensor]]] = None
        # {"name", "fingerprint"} of the base this head was trained on.
        self.trained_on: Optional[Dict[str, str]] = None

    # --------------------------------------------------------------- linking

    def attach(self, base) -> None:
        """Use ``base`` (a ``SharedBase`` component) as this head's encoder; spaCy's linking calls it."""
        if self._model is not None and base is self._built_on:
            return
        if self._model is not None:
            # Built on another base (the component was sourced into this pipeline):
            # keep the trained state, rebuild on this base's tensors.
            self._pending = (self._model.config.to_dict(), own_state(self._model, self._built_on.network))
            self._model = None
        self.base = base
        self.build_pending()

    def build_pending(self) -> bool:
        """Build the saved network once the base has its weights; True when the network is there."""
        if self._model is not None:
            return True
        if self._pending is None or self.base is None or not self.base.is_loaded:
            return False
        self.check_same_base()
        config_dict, state = self._pending
        network = self.rebuild(self.base.config_from_dict(config_dict), self.base.network)
        network = self._finish(network)
        load_own_state(network, state, what=f"The head on '{self.base_upstream}'")
        self._install(network)
        self._pending = None
        return True

    def new_network(self, build: BuildNew) -> HFObjects:
        """A new network on the base (own layers initialized, adapter at its start), at ``initialize``."""
        base = self.require_base()
        network = self._finish(build(base))
        self.trained_on = base.identity()
        self._built_on = base
        return HFObjects(base.tokenizer, network, base.vocab_file_contents, {}, {})

    def require_base(self):
        """The base, loaded; else one line saying what to add or do."""
        if self.base is None:
            raise UserError(
                f"This component runs on the shared base encoder '{self.base_upstream}', which is not in the "
                f"pipeline before it; add an 'mbert_base' component named '{self.base_upstream}' earlier in "
                f"[nlp] pipeline, or set the model's base = null to fine-tune an own encoder copy."
            )
        if not self.base.is_loaded:
            raise UserError(
                f"The shared base encoder '{self.base_upstream}' has no weights yet; call nlp.initialize() "
                f"(spacy train does) or load a trained pipeline."
            )
        return self.base

    def check_same_base(self) -> None:
        """Refuse a base whose weights are not those this head was trained on."""
        if self.trained_on is None:
            return
        found = self.base.identity()
        if found["fingerprint"] != self.trained_on["fingerprint"]:
            raise UserError(
                f"This head was trained on base encoder '{self.trained_on['name']}' (weights "
                f"{self.trained_on['fingerprint'][:12]}) but '{self.base_upstream}' is '{found['name']}' (weights "
                f"{found['fingerprint'][:12]}); assemble heads trained on the same base, or retrain this one on it."
            )

    def _finish(self, network: torch.nn.Module) -> torch.nn.Module:
        network = add_adapter(network, self.base.network, self.adapter, self.exclude_modules)
        return network.to(get_torch_default_device())

    def _install(self, network: torch.nn.Module) -> None:
        base = self.base
        self._model = network
        self._hfmodel = HFObjects(base.tokenizer, network, base.vocab_file_contents, {}, {})
        self._built_on = base

    # -------------------------------------------------------------- training

    def lr_scale(self, name: str) -> float:
        """The adapter's weights step at its ``learn_rate_scale``, the head's own layers at 1x."""
        return self.adapter.learn_rate_scale if self.adapter is not None and is_adapter_weight(name) else 1.0

    # --------------------------------------------------------- serialization

    def to_bytes(self) -> bytes:
        if self._model is None and self._pending is None:
            return super().to_bytes()  # not initialized: the settings only
        if self._model is not None:
            config_dict = self._model.config.to_dict()
            state = own_state(self._model, self._built_on.network)
        else:
            config_dict, state = self._pending
        weights = BytesIO()
        torch.save(state, weights)
        data = weights.getvalue()
        msg = {
            ON_BASE_KEY: {"upstream": self.base_upstream, **(self.trained_on or {})},
            "config": config_dict,
            "state": data,
            WEIGHTS_CHECKSUM_KEY: hashlib.sha256(data).hexdigest(),
        }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "OnBaseShim":
        try:
            msg = srsly.msgpack_loads(bytes_data)
        except Exception as error:  # msgpack raises several unrelated types
            raise UserError(
                f"The head's saved adapter is corrupted or truncated ({type(error).__name__}: "
                f"{first_line(error)}); re-save or re-download the pipeline."
            ) from None
        if ON_BASE_KEY not in msg:
            if msg.get("config"):
                raise UserError(
                    f"This component was saved with its own encoder copy (full fine-tuning), but its config "
                    f"puts it on the shared base '{self.base_upstream}'; load it with base = null in its model."
                )
            return super().from_bytes(bytes_data)
        check_weights_checksum(msg)
        state = torch.load(BytesIO(msg["state"]), map_location=get_torch_default_device(), weights_only=True)
        base_info = dict(msg[ON_BASE_KEY])
        self.trained_on = {"name": base_info.get("name", "?"), "fingerprint": base_info.get("fingerprint", "")}
        self._pending = (msg["config"], state)
        self._model = None
        self.build_pending()
        return self


def ensure_built(shim) -> None:
    """Before a head on a base runs: build its saved network, or say in one line why it cannot be."""
    if isinstance(shim, OnBaseShim) and shim._model is None and shim._pending is not None:
        shim.require_base()
        shim.build_pending()


def task_network(auto_class, base_of: BaseOf) -> Rebuild:
    """``rebuild`` for a Hugging Face task class (e.g. ``AutoModelForQuestionAnswering``) whose
    ``base_of(network)`` part is the base encoder."""

    def rebuild(config, base: torch.nn.Module) -> torch.nn.Module:
        from transformers.modeling_utils import no_init_weights

        with no_init_weights():
            network = auto_class.from_config(config)
        share_base(base_of(network), base)
        return network

    return rebuild


def new_task_network(rebuild: Rebuild, transformer_config: Dict) -> BuildNew:
    """``build`` for :meth:`OnBaseShim.new_network`: the base's config with the head's settings
    (``transformer_config``, e.g. dropout), then new own layers."""

    def build(base) -> torch.nn.Module:
        return init_own_layers(rebuild(base.network_config(transformer_config), base.network), base.network)

    return build

"""``mbert_base``: the frozen base encoder that heads with adapters share, stored once.

A pipeline with several heads on one encoder holds the encoder's weights and
tokenizer here, once, in memory and on disk. The heads (``transformer`` for
textcat and other listeners, ``mbert_qa``, ``mbert_translator``) name it in their
model's ``base`` setting and build their networks on its tensors, each with its own
LoRA adapter and own layers (``adapters.py``, ``on_base.py``); this component does
nothing to a doc itself. Its weights are never trained: they are frozen, and its
``fingerprint`` (SHA-256 of the weights) is what heads trained separately compare
before they are assembled into one pipeline.

Put it before its heads in ``[nlp] pipeline``: spaCy links a component only to the
ones after it. A base that no head names (every head fine-tuning its own copy)
loads nothing and saves nothing, so the shipped configs can always list it and
switch a head between the two modes with its ``base`` setting alone.
"""

import copy
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import HFObjects
from thinc.api import Config, Model

from ..errors import corrupted_file_errors
from .adapters import fingerprint
from .loading import DEFAULT_ENCODER, load_pretrained
from .on_base import OnBaseShim
from .owned import empty_hf_objects, has_encoder, owned_encoder
from .shim import MBertShim
from .weights_file import weights_beside

DEFAULT_CONFIG_STR = f"""
[mbert_base]

[mbert_base.model]
@architectures = "spacy-mbert.BaseEncoder.v1"
name = "{DEFAULT_ENCODER}"
tokenizer_config = {{"use_fast": true}}
transformer_config = {{}}
"""
DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)


@registry.architectures("spacy-mbert.BaseEncoder.v1")
def BaseEncoder(
    *,
    name: str = DEFAULT_ENCODER,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
) -> Model:
    """The shared base encoder's weights and tokenizer (loaded at initialization, saved in the pipeline).

    name (str): Hub name or local checkpoint directory (e.g. "encoders/e5-small").
    tokenizer_config (dict): Keyword arguments for ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): Keyword arguments for ``AutoConfig.from_pretrained``.
    """
    shim = MBertShim(empty_hf_objects(tokenizer_config, transformer_config), model_cls=_WithoutPooler)
    return owned_encoder("mbert-base", _no_forward, shim=shim, encoder=name, load=_load)


class _WithoutPooler:
    """``model_cls`` of the base's shim: ``AutoModel`` without the pooler, as ``_load`` loads it."""

    @staticmethod
    def from_config(config):
        from transformers import AutoModel

        try:
            return AutoModel.from_config(config, add_pooling_layer=False)
        except TypeError:  # a model class without a pooler setting
            return AutoModel.from_config(config)


def _load(model: Model, Y=None) -> HFObjects:
    hf = model.shims[0]._hfmodel
    # No pooler: it is a head, not the encoder, and checkpoints without pooler weights
    # (e5-small) would get a random one at every load, so two loads of one checkpoint
    # would not be the same base (another fingerprint). Heads that have one own it.
    return load_pretrained(
        model.attrs["name"],
        dict(hf._init_tokenizer_config),
        dict(hf._init_transformer_config),
        model_kwargs={"add_pooling_layer": False},
    )


def _no_forward(model: Model, X, is_train: bool):
    raise ValueError("The base encoder runs inside the heads that use it (their model's `base` setting).")


@Language.factory("mbert_base", default_config=DEFAULT_CONFIG["mbert_base"])
def make_base(nlp: Language, name: str, model: Model) -> "SharedBase":
    """The frozen base encoder shared by the heads that name it in their model's ``base``.

    model (Model): A ``spacy-mbert.BaseEncoder.v1`` (the checkpoint to load at initialization).
    """
    return SharedBase(nlp.vocab, model, name)


class SharedBase(Pipe):
    """Holds the base encoder once; its heads build on its tensors (see the module docstring)."""

    def __init__(self, vocab, model: Model, name: str = "mbert_base"):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: Dict[str, Optional[str]] = {"fingerprint": None, "encoder": model.attrs["name"]}
        # spaCy's listener protocol: the heads on this base, by component name.
        self.listener_map: Dict[str, List[Model]] = {}

    def __call__(self, doc: Doc) -> Doc:
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        yield from stream

    # ------------------------------------------------------------- the base

    @property
    def is_loaded(self) -> bool:
        return has_encoder(self.model)

    @property
    def network(self):
        return self.model.shims[0]._model

    @property
    def tokenizer(self):
        return self.model.shims[0]._hfmodel.tokenizer

    @property
    def vocab_file_contents(self) -> Optional[bytes]:
        return self.model.shims[0]._hfmodel.vocab_file_contents

    def identity(self) -> Dict[str, str]:
        """Checkpoint name and weights fingerprint: what a head records as the base it was trained on."""
        return {"name": str(self.cfg.get("encoder")), "fingerprint": str(self.cfg.get("fingerprint"))}

    def network_config(self, overrides: Dict) -> object:
        """A copy of the base's Hugging Face config with a head's settings (e.g. dropout) applied."""
        config = copy.deepcopy(self.network.config)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    @staticmethod
    def config_from_dict(config_dict: Dict) -> object:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        return CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)

    def initialize(self, get_examples=None, *, nlp: Optional[Language] = None) -> None:
        """Load the checkpoint (once) and freeze it; a base no head uses stays empty (nothing to store)."""
        if not self.listener_map:
            return
        self.model.initialize()
        self._freeze()
        if self.cfg.get("fingerprint") is None:
            self.cfg["fingerprint"] = fingerprint(self.network)

    def _freeze(self) -> None:
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.network.eval()

    # ----------------------------------------------- spaCy's listener protocol

    @property
    def listeners(self) -> List[Model]:
        return [model for models in self.listener_map.values() for model in models]

    @property
    def listening_components(self) -> List[str]:
        return list(self.listener_map)

    def add_listener(self, listener: Model, component_name: str) -> None:
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)

    def remove_listener(self, listener: Model, component_name: str) -> bool:
        models = self.listener_map.get(component_name, [])
        if listener in models:
            models.remove(listener)
            if not models:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component) -> None:
        """Attach the heads of ``component`` that name this base (spaCy calls this when it links the pipeline)."""
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            return
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, OnBaseShim) and shim.base_upstream == self.name:
                    self.add_listener(node, component.name)
                    shim.attach(self)

    # --------------------------------------------------------- serialization

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return srsly.msgpack_dumps({"cfg": self.cfg, "model": self.model.to_bytes()})

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "SharedBase":
        with corrupted_file_errors(f"The '{self.name}' component's model"):
            msg = srsly.msgpack_loads(bytes_data)
            self.cfg.update(msg["cfg"])
            self.model.from_bytes(msg["model"])
        self._after_load()
        return self

    def to_disk(self, path, *, exclude=tuple()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self.cfg)
        with weights_beside(self.model, path / "model"):
            self.model.to_disk(path / "model")

    def from_disk(self, path, *, exclude=tuple()) -> "SharedBase":
        path = Path(path)
        model_file = path / "model"
        with corrupted_file_errors(f"The '{self.name}' component's model file ({model_file})"):
            self.cfg.update(srsly.read_json(path / "cfg"))
            with weights_beside(self.model, model_file):
                self.model.from_disk(model_file)
        self._after_load()
        return self

    def _after_load(self) -> None:
        if self.is_loaded:
            self._freeze()

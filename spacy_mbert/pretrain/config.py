"""Settings of a pretraining run: defaults < ``[pretrain]`` section of a .cfg file < explicit options.

Every field of :class:`PretrainConfig` is also a CLI option (``max_steps`` is
``--max-steps``) and a key of the ``[pretrain]`` section of a config file read
with ``thinc.api.Config``; ``configs/pretrain.cfg`` documents the defaults.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from ..errors import UserError

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")

# Settings that do not change what is learned: they may differ on --resume.
NOT_TRAJECTORY = ("checkpoint_every", "keep_checkpoints", "gpu_id", "mixed_precision", "text", "lang", "eval_text")


@dataclass
class PretrainConfig:
    """Effective settings of a run (see ``configs/pretrain.cfg`` for what each one does)."""

    # Data
    text: List[str] = field(default_factory=list)
    lang: List[str] = field(default_factory=list)
    eval_text: List[str] = field(default_factory=list)
    eval_fraction: float = 0.05
    eval_max_docs: int = 1000
    max_length: int = 128
    alpha: float = 0.7
    # Masking
    mask_prob: float = 0.15
    whole_word_mask: bool = False
    # Optimization
    max_steps: int = 10000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    # Checkpoints and hardware
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    gpu_id: int = -1
    mixed_precision: str = "auto"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "PretrainConfig":
        checks = [
            (self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (8 <= self.max_length, "--max-length must be at least 8"),
            (0.0 < self.mask_prob < 1.0, "--mask-prob must be between 0 and 1 (BERT: 0.15)"),
            (self.alpha >= 0.0, "--alpha must be >= 0 (1: proportional to data size, 0: uniform; M-BERT: 0.7)"),
            (0.0 <= self.eval_fraction < 1.0, "--eval-fraction must be in [0, 1)"),
            (self.eval_max_docs >= 0, "--eval-max-docs must be >= 0"),
            (self.lr > 0, "--lr must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (0.0 <= self.warmup_ratio <= 1.0, "--warmup-ratio must be in [0, 1]"),
            (self.grad_clip >= 0, "--grad-clip must be >= 0 (0 turns clipping off)"),
            (self.checkpoint_every >= 0, "--checkpoint-every must be >= 0 (0: only the final model)"),
            (self.keep_checkpoints >= 0, "--keep-checkpoints must be >= 0 (0: keep all)"),
            (self.mixed_precision in MIXED_PRECISION, f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"{message}.")
        if not self.text:
            raise UserError(
                'No training text: pass at least one --text PATH (.txt, one document per line, or .jsonl with "text" and optional "lang").'
            )
        if len(self.lang) > 1 and len(self.lang) != len(self.text):
            raise UserError(
                f"Got {len(self.lang)} --lang values for {len(self.text)} --text files: pass one --lang "
                f"for all files, or one per --text in the same order."
            )
        return self


FIELDS = {f.name: f for f in dataclasses.fields(PretrainConfig)}


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read the ``[pretrain]`` section of a spaCy/thinc-style .cfg file."""
    from thinc.api import Config

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"Config file not found: {path}. Pass an existing .cfg file with --config (see configs/pretrain.cfg)."
        )
    try:
        config = Config().from_disk(path, interpolate=True)
    except Exception as error:  # thinc raises several types for syntax errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: could not parse the config ({first[:200]}).") from None
    if "pretrain" not in config:
        raise UserError(f"{path}: no [pretrain] section; put the settings under [pretrain] (see configs/pretrain.cfg).")
    section = dict(config["pretrain"])
    _check_keys(section, f"{path} [pretrain]")
    return section


def _check_keys(settings: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(settings) - set(FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}.")


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check and convert one setting to the type of its field."""
    default = PretrainConfig()
    expected = type(getattr(default, name))
    if expected is list:
        if value is None:
            return []
        if isinstance(value, (str, Path)):
            return [str(value)]
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value):
            return [str(v) for v in value]
    elif expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    raise UserError(f"{where}: setting '{name}' should be {expected.__name__}, got {value!r}.")


def resolve_config(
    config_path: Optional[Union[str, Path]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    *,
    base: Optional[Mapping[str, Any]] = None,
) -> PretrainConfig:
    """Defaults, then ``base`` (a resumed checkpoint's settings), then the .cfg file's
    ``[pretrain]`` section, then ``overrides`` (values of None count as not given)."""
    settings: Dict[str, Any] = {}
    for name, value in (base or {}).items():
        if name in FIELDS:
            settings[name] = _coerce(name, value, "checkpoint")
    if config_path is not None:
        for name, value in load_config_file(config_path).items():
            settings[name] = _coerce(name, value, f"{config_path} [pretrain]")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(overrides, "pretrain()")
    for name, value in overrides.items():
        settings[name] = _coerce(name, value, "option")
    return PretrainConfig(**settings).validate()


def trajectory_differences(saved: Mapping[str, Any], current: PretrainConfig) -> List[str]:
    """Settings that change what is learned and differ from a checkpoint's."""
    now = current.to_dict()
    return [
        f"{name}: {saved.get(name)!r} -> {now[name]!r}"
        for name in FIELDS
        if name not in NOT_TRAJECTORY and saved.get(name) != now[name]
    ]

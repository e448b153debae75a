"""Row helpers for the shim: slice, reorder, pad and join the batch rows of model inputs and outputs.

Inputs are thinc ``ArgsKwargs`` of tensors; outputs are whatever the Hugging Face
model returns (a ``ModelOutput``, tuples of tensors, a tensor). A tensor counts
as a batch tensor when its first dimension is the batch's number of rows.
"""

import torch
from thinc.api import ArgsKwargs


def batch_rows(inputs: ArgsKwargs) -> int:
    """The batch size shared by all input tensors (0 when they do not share one)."""
    values = (*inputs.args, *inputs.kwargs.values())
    rows = {value.shape[0] for value in values if isinstance(value, torch.Tensor) and value.dim()}
    return rows.pop() if len(rows) == 1 else 0


def slice_rows(inputs: ArgsKwargs, start: int, stop: int, n_rows: int) -> ArgsKwargs:
    def cut(value):
        is_batch = isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n_rows
        return value[start:stop] if is_batch else value

    return ArgsKwargs(
        args=tuple(cut(value) for value in inputs.args),
        kwargs={key: cut(value) for key, value in inputs.kwargs.items()},
    )


def take_rows(inputs: ArgsKwargs, rows: torch.Tensor, n_rows: int, width: int, keep: int) -> ArgsKwargs:
    """The given rows of every batch tensor, cut to the first ``keep`` positions."""

    def take(value):
        if not (isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n_rows):
            return value
        value = value[rows.to(value.device)]
        return value[:, :keep] if value.dim() >= 2 and value.shape[1] == width else value

    return ArgsKwargs(
        args=tuple(take(value) for value in inputs.args),
        kwargs={key: take(value) for key, value in inputs.kwargs.items()},
    )


def pad_sequence_dim(output, group_width: int, width: int):
    """Zero-pad (batch, sequence, ...) tensors of a model output from ``group_width`` to ``width``."""
    from transformers.utils import ModelOutput

    if isinstance(output, torch.Tensor):
        if output.dim() == 3 and output.shape[1] == group_width and group_width < width:
            return torch.nn.functional.pad(output, (0, 0, 0, width - group_width))
        return output
    if isinstance(output, ModelOutput):
        return type(output)(**{key: pad_sequence_dim(output[key], group_width, width) for key in output.keys()})
    if isinstance(output, (tuple, list)):
        return type(output)(pad_sequence_dim(item, group_width, width) for item in output)
    return output


def take_output_rows(output, rows: torch.Tensor, n_rows: int):
    """Reorder the batch rows of a model output (ModelOutput, tuples of tensors, tensors)."""
    from transformers.utils import ModelOutput

    if isinstance(output, torch.Tensor):
        return output[rows.to(output.device)] if output.dim() and output.shape[0] == n_rows else output
    if isinstance(output, ModelOutput):
        return type(output)(**{key: take_output_rows(output[key], rows, n_rows) for key in output.keys()})
    if isinstance(output, (tuple, list)):
        return type(output)(take_output_rows(item, rows, n_rows) for item in output)
    return output


def concat_rows(outputs: list):
    """Join the outputs of consecutive row slices (ModelOutput, tuples of tensors, tensors)."""
    from transformers.utils import ModelOutput

    head = outputs[0]
    if isinstance(head, torch.Tensor):
        return torch.cat(outputs, dim=0) if head.dim() else head
    if isinstance(head, ModelOutput):
        return type(head)(**{key: concat_rows([output[key] for output in outputs]) for key in head.keys()})
    if isinstance(head, (tuple, list)):
        return type(head)(concat_rows(list(items)) for items in zip(*outputs))
    return head

"""QA on an XLM-R-style checkpoint: positions start after the padding id, so 514 rows read 512 wordpieces."""

from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

from spacy_mbert.encoder import position_limit
from spacy_mbert.errors import UserError

from ..conftest import blank_xx


@pytest.fixture(scope="module")
def tiny_xlmr_dir(tiny_unigram_dir, tmp_path_factory):
    """The unigram tokenizer with a 1-layer XLM-R network of 514 position embeddings (as XLM-R has)."""
    out = tmp_path_factory.mktemp("tiny-xlmr")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_unigram_dir))
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    XLMRobertaModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def qa_nlp(encoder_dir, max_seq_length: int):
    nlp = blank_xx()
    model = {"name": str(encoder_dir), "max_seq_length": max_seq_length, "doc_stride": 128}
    nlp.add_pipe("mbert_qa", config={"model": model})
    return nlp


def test_position_limit_subtracts_the_padding_offset(tiny_xlmr_dir):
    assert position_limit(XLMRobertaConfig.from_pretrained(str(tiny_xlmr_dir))) == 512
    assert position_limit(SimpleNamespace()) is None  # no max_position_embeddings


@pytest.mark.parametrize("max_seq_length", [513, 514])
def test_qa_rejects_windows_longer_than_the_encoder_reads(tiny_xlmr_dir, max_seq_length):
    nlp = qa_nlp(tiny_xlmr_dir, max_seq_length)
    with pytest.raises(UserError, match=r"reads at most 512 wordpieces.*set max_seq_length <= 512") as error:
        nlp.initialize()
    assert "\n" not in str(error.value)


def test_qa_runs_windows_of_the_largest_valid_length(tiny_xlmr_dir):
    nlp = qa_nlp(tiny_xlmr_dir, 512)
    nlp.initialize()
    context = " ".join(["Paris liegt an der Seine und ist die Hauptstadt von Frankreich."] * 60)
    answers = nlp.get_pipe("mbert_qa").answer(context, "Wo liegt Paris?")
    assert isinstance(answers, list)

"""``spacy-mbert.wordpiece_strided_spans.v1`` and the transformer's handling of over-long windows.

- Where 128 tokens fit the encoder, the windows are exactly spacy-transformers' strided spans.
- Where they do not (Thai, which BERT does not split into words; a small ``max_wordpieces``),
  every window fits, windows still overlap, and every token is in one.
- One spaCy token longer than a window is split over several encoder rows: every one of its
  wordpieces reaches the encoder once, and training passes gradients through the split rows.
- Any other over-long window (e.g. from ``strided_spans.v1``) is cut with a warning.
"""

import copy
import pickle
import warnings

import numpy
import pytest
from spacy.training import Example
from spacy_transformers.span_getters import get_strided_spans
from transformers import AutoTokenizer

from spacy_mbert.encoder.span_getters import WordpieceStridedSpans, configure_wordpiece_strided_spans
from spacy_mbert.errors import UserError
from spacy_mbert.textcat.layers import content_positions

from .conftest import THAI_TEXT, blank_xx, transformer_pipeline

LATIN = (
    "The lighthouse keeper watched unbelievably enormous waves crash against Felsen und Klippen, "
    "北京天安门 while the sailors sang songs about distant harbours. "
)
LONG_WORD_TEXT = "Ein Wort: " + "abcdefghij" * 300 + " Ende."


def _bounds(spans):
    return [(span.start, span.end) for span in spans]


def _getter(tokenizer, **settings):
    getter = configure_wordpiece_strided_spans(**settings)
    getter.set_tokenizer(tokenizer)
    return getter


def _seen_and_all(nlp, doc):
    """The wordpieces the classifier pools for ``doc`` and the text's wordpieces (SentencePiece's
    bare "▁", whose presence depends on where a window starts, left out of both)."""
    trf_data = doc._.trf_data
    seq_len = trf_data.model_output["last_hidden_state"].shape[1]
    strings = [s for row in trf_data.wordpieces.strings for s in row + ["<pad>"] * (seq_len - len(row))]
    seen = [strings[i] for i in content_positions(trf_data) if strings[i] != "▁"]
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    return seen, [piece for piece in tokenizer.tokenize(doc.text) if piece != "▁"]


@pytest.mark.parametrize("window,stride", [(128, 96), (8, 6), (5, 3), (5, 5), (1, 1)])
def test_same_windows_as_strided_spans_where_they_fit(tiny_wordpiece_dir, window, stride):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_wordpiece_dir))
    getter = _getter(tokenizer, window=window, stride=stride)
    nlp = blank_xx()
    for text in ["", "x", LATIN, LATIN * 8, LATIN * 40, "我今天有点儿累。" * 100]:
        doc = nlp.make_doc(text)
        expected = get_strided_spans([doc], window=window, stride=stride)[0]
        assert _bounds(getter([doc])[0]) == _bounds(expected), (text[:20], window, stride)


@pytest.mark.parametrize("case", ["thai", "small-limit-wordpiece", "small-limit-unigram"])
def test_windows_fit_overlap_and_cover_every_token(case, tiny_wordpiece_dir, tiny_unigram_dir, tiny_thai_wordpiece_dir):
    if case == "thai":
        encoder, text, settings = tiny_thai_wordpiece_dir, THAI_TEXT * 40, {}
    else:
        encoder = tiny_wordpiece_dir if case.endswith("wordpiece") else tiny_unigram_dir
        text, settings = LATIN * 10 + "  Hello  world \n\n again, (a) «b» 3.5 ", {"max_wordpieces": 24}
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    limit = settings.get("max_wordpieces", tokenizer.model_max_length)
    doc = blank_xx().make_doc(text)
    spans = _getter(tokenizer, window=128, stride=96, **settings)([doc])[0]
    assert len(spans) > 3
    # Every window fits, as spacy-transformers will tokenize it.
    assert max(len(tokenizer(span.text)["input_ids"]) for span in spans) <= limit
    # In order, every token in a window, consecutive windows overlapping.
    assert spans[0].start == 0 and spans[-1].end == len(doc)
    for before, after in zip(spans, spans[1:]):
        assert before.start < after.start < before.end < after.end, _bounds([before, after])
    if case == "thai":
        # ~25 wordpieces per Thai "word": far fewer than 128 tokens per window, yet close to the limit.
        assert max(len(span) for span in spans) < 30
        assert min(len(tokenizer(span.text)["input_ids"]) for span in spans[:-1]) > limit - 40


def test_span_getter_settings_and_tokenizer_are_checked(tiny_wordpiece_dir):
    for settings in ({"window": 0, "stride": 1}, {"window": 8, "stride": 9}, {"window": 8, "stride": 0}):
        with pytest.raises(UserError, match="stride <= window"):
            configure_wordpiece_strided_spans(**settings)
    with pytest.raises(UserError, match="max_wordpieces must be at least 3"):
        configure_wordpiece_strided_spans(max_wordpieces=2)
    getter = configure_wordpiece_strided_spans()
    with pytest.raises(UserError) as info:
        getter([blank_xx().make_doc("Hello world")])
    assert "\n" not in str(info.value) and "spacy-mbert.MBertTransformer.v1" in str(info.value)
    # The tokenizer is not copied or pickled with the getter: the transformer sets it before use.
    getter.set_tokenizer(AutoTokenizer.from_pretrained(str(tiny_wordpiece_dir)))
    for clone in (copy.deepcopy(getter), pickle.loads(pickle.dumps(getter))):
        assert isinstance(clone, WordpieceStridedSpans) and clone._tokenizer is None
        assert (clone.window, clone.stride) == (128, 96)


def test_one_token_longer_than_a_window_is_split_over_rows(tiny_unigram_dir):
    """A 3,000-character word is 2,400 SentencePiece pieces: five rows of <= 512, each with <s> ... </s>."""
    nlp = transformer_pipeline(tiny_unigram_dir)
    nlp.initialize()
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is cut, so nothing to warn about
        doc = nlp(LONG_WORD_TEXT)
    trf_data = doc._.trf_data
    rows = trf_data.wordpieces
    assert len(rows) >= 6 and max(rows.lengths) <= tokenizer.model_max_length
    for row, (strings, length) in enumerate(zip(rows.strings, rows.lengths)):
        assert strings[0] == tokenizer.cls_token and strings[length - 1] == tokenizer.sep_token
        assert numpy.asarray(rows.attention_mask)[row].sum() == length
    seen, expected = _seen_and_all(nlp, doc)
    assert seen == expected
    # The word's alignment points at all its pieces, across the rows.
    word = next(token for token in doc if len(token) == 3000)
    token_of = numpy.repeat(numpy.arange(len(doc)), trf_data.align.lengths)
    assert (token_of == word.i).sum() == len(tokenizer.tokenize("abcdefghij" * 300))


def test_training_passes_gradients_through_split_rows(tiny_unigram_dir):
    nlp = transformer_pipeline(tiny_unigram_dir)
    nlp.add_pipe(
        "textcat", config={"model": {"@architectures": "spacy-mbert.ClsPoolTextCat.v1", "exclusive_classes": True}}
    )
    examples = [
        Example.from_dict(nlp.make_doc(text), {"cats": {"A": float(label == "A"), "B": float(label == "B")}})
        for text, label in [(LONG_WORD_TEXT, "A"), ("Ein kurzer Satz.", "B"), ("", "A")]
    ]
    nlp.initialize(lambda: examples)
    parameters = list(nlp.get_pipe("transformer").model.transformer.parameters())
    losses = nlp.update(examples, sgd=False)
    assert numpy.isfinite(losses["textcat"])
    assert sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None) > 0


def test_other_over_long_windows_are_cut_with_a_warning(tiny_thai_wordpiece_dir):
    """spacy-transformers' strided_spans.v1: 128 Thai "words" are ~3,300 wordpieces."""
    strided = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}
    nlp = transformer_pipeline(tiny_thai_wordpiece_dir, get_spans=strided)
    nlp.initialize()
    with pytest.warns(UserWarning, match="more wordpieces than the encoder takes.*wordpiece_strided_spans"):
        doc = nlp(THAI_TEXT * 40)
    assert max(doc._.trf_data.wordpieces.lengths) <= 512

"""Translation with a warm-started BERT2BERT / BERTShare encoder-decoder (issue #5).

- :mod:`.model`: ``spacy-mbert.Bert2Bert.v1`` (the thinc-wrapped ``EncoderDecoderModel``,
  restricted decoder vocabulary, teacher forcing, batched beam search).
- :mod:`.component`: the ``mbert_translator`` factory (``doc._.translation``).
- :mod:`.scorer`: ``spacy-mbert.translation_scorer.v1`` (sacreBLEU BLEU / chrF per language).
- :mod:`.detokenize`: wordpieces -> text in the target script.

The modules are imported through the package's entry points (spaCy factories,
architectures, scorers), so importing this package registers nothing by itself.
"""

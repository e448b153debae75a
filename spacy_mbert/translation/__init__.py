"""Translation with a warm-started BERT2BERT / BERTShare encoder-decoder (issue #5).

- :mod:`.architecture`: ``spacy-mbert.Bert2Bert.v1``, the thinc model (teacher-forcing loss);
- :mod:`.build`: the ``EncoderDecoderModel`` warm-started from one checkpoint, BERTShare;
- :mod:`.vocabulary`: the restricted decoder vocabulary and the special ids;
- :mod:`.shim`: ``Bert2BertShim``, saving/loading and the decoder's id spaces;
- :mod:`.batch`: teacher-forcing batches;
- :mod:`.generate`: batched beam search, long sources in chunks (:mod:`.chunks`);
- :mod:`.detokenize`: wordpieces -> text in the target script;
- :mod:`.component`: the ``mbert_translator`` factory (``doc._.translation``);
- :mod:`.convert`: translation pairs (TSV / JSONL) -> docs;
- :mod:`.scorer`: ``spacy-mbert.translation_scorer.v1`` (sacreBLEU BLEU / chrF per language).

The modules are imported through the package's entry points (spaCy factories,
architectures, scorers), so importing this package registers nothing by itself.
"""

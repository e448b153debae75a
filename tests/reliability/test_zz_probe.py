import spacy, pytest, traceback

def test_probe(textcat_nlp, qa_nlp, translator_nlp):
    for n, nlp in [("textcat", textcat_nlp), ("qa", qa_nlp), ("tr", translator_nlp)]:
        nlp.to_disk(f"/tmp/rel/saved-{n}")

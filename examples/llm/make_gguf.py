#!/usr/bin/env python3
"""Write ``tiny-llama.gguf``: a tiny Llama-architecture model that llama.cpp loads and runs.

No weights are downloaded: the model has a real SentencePiece-style vocabulary (the 256 byte
tokens, so any text tokenizes, plus a few hundred English words and their prefixes, so words
tokenize as words), a chat template, and small random weights from a fixed seed. Its text is
gibberish, but every step of serving it is real: load, tokenize, generate, stream, stop, count.
The same seed writes the same file, and llama.cpp at temperature 0 answers the same prompt with
the same text.

    python examples/llm/make_gguf.py                 # writes examples/llm/tiny-llama.gguf
    python examples/llm/make_gguf.py OUT.gguf --seed 7 --context 512
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np

EMBED = 64
LAYERS = 2
FEED_FORWARD = 128
HEADS = 4
# A chat template in the GGUF (Jinja, as Hugging Face tokenizers carry): kaip renders chat
# messages with it, the way llama.cpp's own server does.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
WORDS = """
the of and to in is it you that he was for on are with as his they be at one have this from or
had by word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
head stand own page should country found answer school grow study still learn plant cover food
sun four between state keep eye never last let thought city tree cross farm hard start might story
saw far sea draw left late run while press close night real life few north open seem together next
white children begin got walk example ease paper group always music those both mark often letter
until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual
young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green oh quick develop
ocean warm free minute strong special mind behind clear tail produce fact street inch multiply
nothing course stay wheel full force blue object decide surface deep moon island foot system busy
test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game
shape equate hot miss brought heat snow tire bring yes distant fill east paint language among
""".split()  # noqa: SIM905 (a word list reads better as text)


def write(path: Path, *, seed: int = 0, context: int = 512) -> Path:
    """Write the model to ``path`` (deterministic for a ``seed``); returns ``path``."""
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    scores: list[float] = [0.0, 0.0, 0.0]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    for byte in range(256):  # byte fallback: any text tokenizes
        tokens.append(f"<0x{byte:02X}>".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.BYTE)
    words = ["\u2581" + w for w in dict.fromkeys(WORDS)]  # "▁word": a word after a space
    words += [":", "\n", "user", "assistant", "system"]
    # llama.cpp's SentencePiece tokenizer builds a piece by merging pairs of symbols whose join
    # is in the vocabulary, so every prefix of a word is a piece too (scored below the words).
    prefixes = [w[:n] for w in words for n in range(1, len(w))]
    pieces = list(dict.fromkeys([*words, *prefixes]))
    for rank, piece in enumerate(pieces):
        tokens.append(piece.encode())
        scores.append(-float(rank) / len(pieces))
        types.append(gguf.TokenType.NORMAL)
    vocab = len(tokens)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("kaip-tiny-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)

    def weights(rows: int, cols: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    ones = np.ones(EMBED, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(vocab, EMBED, 4.0))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weights(vocab, EMBED, 8.0))
    for block in range(LAYERS):
        name = f"blk.{block}"
        writer.add_tensor(f"{name}.attn_norm.weight", ones)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{name}.{part}.weight", weights(EMBED, EMBED))
        writer.add_tensor(f"{name}.ffn_norm.weight", ones)
        writer.add_tensor(f"{name}.ffn_gate.weight", weights(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{name}.ffn_up.weight", weights(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{name}.ffn_down.weight", weights(EMBED, FEED_FORWARD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", type=Path, default=Path(__file__).parent / "tiny-llama.gguf"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context", type=int, default=512, help="context length, tokens")
    args = parser.parse_args()
    print(write(args.output, seed=args.seed, context=args.context))


if __name__ == "__main__":
    main()

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
    python examples/llm/make_gguf.py small.gguf --shape small   # 244 MB, ~25 ms a token

Its shape (``--embed``, ``--layers``, ``--feed-forward``, ``--heads``, ``--kv-heads``, ``--f16``)
is the tiny one unless given: 64 wide, 2 layers, 4 heads, F32, 1.1 MB, a fraction of a
millisecond per token on a CPU. ``--shape small`` has the widths of one of the smallest real
LLMs (Qwen2.5-0.5B's: 896 wide, 4,864 feed-forward, 14 heads sharing 2 key/value heads) and 8 of
its 24 layers, in F16: a token costs llama.cpp's server ~25 ms of CPU on one thread of this
project's machines (bench/README.md), of the order of a real small model's on a CPU, for benches
that must not weigh kaip against a toy's per-token cost (all 24 layers, ``--layers 24``: 721 MB,
about three times as slow).
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
SHAPES: dict[str, dict[str, int | bool]] = {
    "tiny": {"embed": EMBED, "layers": LAYERS, "feed_forward": FEED_FORWARD, "heads": HEADS},
    "small": {
        "embed": 896, "layers": 8, "feed_forward": 4864, "heads": 14, "kv_heads": 2, "f16": True,
    },
}  # fmt: skip
"""``--shape`` presets: tiny (the default) and a Qwen2.5-0.5B-like one."""
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


def write(
    path: Path,
    *,
    seed: int = 0,
    context: int = 512,
    embed: int = EMBED,
    layers: int = LAYERS,
    feed_forward: int = FEED_FORWARD,
    heads: int = HEADS,
    kv_heads: int | None = None,
    f16: bool = False,
) -> Path:
    """Write the model to ``path`` (deterministic for a ``seed`` and shape); returns ``path``.

    ``kv_heads`` (default ``heads``) key/value heads are shared by the query heads (grouped-query
    attention); ``f16`` stores the matrices in half precision (norms stay F32, as llama.cpp wants).
    """
    kv_heads = heads if kv_heads is None else kv_heads
    problem = shape_problem(embed, layers, feed_forward, heads, kv_heads)
    if problem:
        raise ValueError(problem)
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
    writer.add_embedding_length(embed)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(embed // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
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
    matrix_type = np.float16 if f16 else np.float32
    kv_width = embed // heads * kv_heads

    def weights(rows: int, cols: int, scale: float = 0.5) -> np.ndarray:
        drawn = rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)
        return drawn.astype(np.float32).astype(matrix_type, copy=False)

    ones = np.ones(embed, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(vocab, embed, 4.0))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weights(vocab, embed, 8.0))
    for block in range(layers):
        name = f"blk.{block}"
        writer.add_tensor(f"{name}.attn_norm.weight", ones)
        writer.add_tensor(f"{name}.attn_q.weight", weights(embed, embed))
        writer.add_tensor(f"{name}.attn_k.weight", weights(kv_width, embed))
        writer.add_tensor(f"{name}.attn_v.weight", weights(kv_width, embed))
        writer.add_tensor(f"{name}.attn_output.weight", weights(embed, embed))
        writer.add_tensor(f"{name}.ffn_norm.weight", ones)
        writer.add_tensor(f"{name}.ffn_gate.weight", weights(feed_forward, embed))
        writer.add_tensor(f"{name}.ffn_up.weight", weights(feed_forward, embed))
        writer.add_tensor(f"{name}.ffn_down.weight", weights(embed, feed_forward))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def shape_problem(embed: int, layers: int, feed_forward: int, heads: int, kv_heads: int) -> str:
    """What is wrong with a shape, as a message naming the option ("" when nothing is)."""
    for option, value, most in (
        ("--embed", embed, 8192),
        ("--layers", layers, 128),
        ("--feed-forward", feed_forward, 32768),
        ("--heads", heads, 128),
        ("--kv-heads", kv_heads, 128),
    ):
        if not 1 <= value <= most:
            return f"{option} is {value}; give 1 to {most}"
    if embed % heads or (embed // heads) % 2:
        return f"--embed {embed} must be --heads ({heads}) times an even head width"
    if heads % kv_heads:
        return f"--heads {heads} must be a multiple of --kv-heads ({kv_heads})"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", type=Path, default=Path(__file__).parent / "tiny-llama.gguf"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context", type=int, default=512, help="context length, tokens")
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), default="tiny",
        help="a preset shape; the options below override its parts (default: tiny)",
    )  # fmt: skip
    parser.add_argument("--embed", type=int, help=f"embedding width (tiny: {EMBED})")
    parser.add_argument("--layers", type=int, help=f"transformer blocks (tiny: {LAYERS})")
    parser.add_argument(
        "--feed-forward", type=int, help=f"feed-forward width (tiny: {FEED_FORWARD})"
    )
    parser.add_argument("--heads", type=int, help=f"attention heads (tiny: {HEADS})")
    parser.add_argument("--kv-heads", type=int, help="key/value heads (default: --heads)")
    parser.add_argument(
        "--f16", action=argparse.BooleanOptionalAction, default=None,
        help="matrices in F16 (tiny: F32)",
    )  # fmt: skip
    args = parser.parse_args()
    shape = dict(SHAPES[args.shape])
    for key in ("embed", "layers", "feed_forward", "heads", "kv_heads", "f16"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    if "kv_heads" in shape and args.heads is not None and args.kv_heads is None:
        del shape["kv_heads"]  # --heads alone: as many key/value heads
    kv_heads = int(shape.get("kv_heads", shape["heads"]))
    problem = shape_problem(
        int(shape["embed"]),
        int(shape["layers"]),
        int(shape["feed_forward"]),
        int(shape["heads"]),
        kv_heads,
    )
    if problem:
        parser.error(problem)
    if args.context < 1:
        parser.error(f"--context is {args.context}; give at least 1")
    print(
        write(
            args.output,
            seed=args.seed,
            context=args.context,
            embed=int(shape["embed"]),
            layers=int(shape["layers"]),
            feed_forward=int(shape["feed_forward"]),
            heads=int(shape["heads"]),
            kv_heads=kv_heads,
            f16=bool(shape.get("f16", False)),
        )
    )


if __name__ == "__main__":
    main()

"""Make a random-weight Llama model + BPE tokenizer offline, deterministically: the tiny one (cpu cells)
or one of realistic shape (GPU cells, where decode must be bound by GPU memory bandwidth, not by the
engine's per-step host overhead).

    python3 tinymodel.py OUT_DIR [--shape tiny-llama|llama-1b-shape|llama-3b-shape|llama-8b-shape] [--device cpu|cuda]

Sizing rule (GPU cells): the smallest shape whose bf16 weights take at least MIN_WEIGHT_READ_MS to read
once at the arch's memory bandwidth (decode reads every weight once per step). On the H200 (4.8 TB/s) a
1.1 B model (0.46 ms of weight reads) decoded no faster than a 1.8 M one, bound by the host, with a 22-27%
A/A spread within a boot; the Llama-3-8B shape (7.0 B, 2.9 ms) decoded at 221 tok/s with 0.2% spread
within a boot and 0.5% between boots (../shared/GPU.md). `shape_for_bandwidth` applies the rule.

Runs INSIDE the image under test (it has torch, transformers, tokenizers; the host has none), so the
heavy imports live in functions and this file never imports the `builder` package. The host may
import it for SERVED and fingerprint(), which are stdlib only.
Same image -> byte-identical files. head_dim is 32: vLLM's CPU attention rejects 16 on the first
request (after /health already said 200). The tokenizer carries <tool_call>/</tool_call> (vLLM's hermes
parser needs them) and a ChatML/Hermes chat template that renders `tools`.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

# The model's facts; the matrix's serve arguments for it must agree (a unit test checks).
SERVED = {"served_name": "tiny", "max_model_len": 512, "eos": "<|im_end|>", "tool_call_parser": "hermes"}
SEED = 0
HIDDEN, LAYERS, HEADS, VOCAB = 128, 2, 4, 1024  # head_dim 32: the smallest size vLLM's CPU attention takes
# name -> (hidden, layers, heads, kv heads, ffn, dtype). The vocabulary is the trained tokenizer's (1024
# tokens) for every shape, so every id a random model emits decodes; at 7 B its embeddings are 0.1%.
SHAPES = {
    "tiny-llama": (HIDDEN, LAYERS, HEADS, HEADS, HIDDEN * 2, "float32"),
    "llama-1b-shape": (2048, 16, 32, 8, 8192, "bfloat16"),  # Llama-3.2-1B's layers: 0.97 B
    "llama-3b-shape": (3072, 28, 24, 8, 8192, "bfloat16"),  # Llama-3.2-3B's layers: 2.8 B
    "llama-8b-shape": (4096, 32, 32, 8, 14336, "bfloat16"),  # Llama-3-8B's layers: 7.0 B
}
GPU_CONTEXT = 32768  # the realistic shapes' max_position_embeddings
GPU_SHAPES = ("llama-1b-shape", "llama-3b-shape", "llama-8b-shape")  # smallest first
MIN_WEIGHT_READ_MS = 2.5


def shape_params(name: str, vocab: int = VOCAB) -> int:
    hidden, layers, heads, kv, ffn, _ = SHAPES[name]
    head_dim = hidden // heads
    per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv * head_dim + 3 * hidden * ffn + 2 * hidden
    return layers * per_layer + 2 * vocab * hidden + hidden


def shape_for_bandwidth(gb_per_s: float) -> str:
    """The GPU smoke model's shape for an arch with this memory bandwidth (GB/s), by the sizing rule."""
    for name in GPU_SHAPES:
        if 2 * shape_params(name) / (gb_per_s * 1e9) * 1e3 >= MIN_WEIGHT_READ_MS:
            return name
    return GPU_SHAPES[-1]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these tools. Answer with "
    "<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.\n"
    "<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% elif m['content'] %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if m['tool_calls'] is defined and m['tool_calls'] %}{% for tc in m['tool_calls'] %}"
    "<tool_call>{\"name\": \"{{ tc['function']['name'] }}\", \"arguments\": "
    "{{ tc['function']['arguments'] | tojson }}}</tool_call>{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ("the a an of to and in is it that for on with as was at by be this from or which model engine image "
         "build cpu token weather city paris london tokyo berlin number count one two three four five six "
         "seven eight nine ten hello world answer question tool call function name arguments value true "
         "false null json result user assistant system").split()


def corpus(rng: random.Random, n: int = 20000):
    """Single spaces only, so BPE learns no whitespace-only merges (the forced tool recipe bans those)."""
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))).capitalize() + rng.choice(".?!,")
        if i % 5 == 0:
            text += f" {rng.randint(0, 10000)} * {rng.randint(0, 99)} = {rng.randint(0, 999999)}"
        if i % 7 == 0:
            text += ' {"name": "%s", "arguments": {"city": "%s"}}' % (rng.choice(WORDS), rng.choice(WORDS))
        yield text


def make_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # every byte encodable
    tok.train_from_iterator(corpus(random.Random(SEED)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=SERVED["eos"], unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=SPECIALS[4:],
                                   model_max_length=SERVED["max_model_len"], chat_template=CHAT_TEMPLATE)
    fast.save_pretrained(out)
    # transformers 5 moves the template to chat_template.jinja; keep it in tokenizer_config.json as well
    # so loaders that read only that file (older transformers, other engines) still serve chat.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return fast


def make_model(out: Path, tok, shape: str = "tiny-llama", device: str = "cpu") -> int:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv, ffn, dtype = SHAPES[shape]
    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      head_dim=hidden // heads, rms_norm_eps=1e-6,
                      # realistic shapes: room for the sweep's prompts at depth (16 k tokens + the decode; the
                      # server's --max-model-len says what it serves, GPU cells 4096)
                      max_position_embeddings=SERVED["max_model_len"] if shape == "tiny-llama" else GPU_CONTEXT,
                      rope_theta=10000.0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, initializer_range=0.02)
    if shape == "tiny-llama":  # byte-identical to the files golden outputs were recorded with
        model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    else:  # built in its dtype on the device: a 7 B model in fp32 on the host would take 28 GB and minutes
        torch.set_default_dtype(getattr(torch, dtype))
        with torch.device(device):
            model = LlamaForCausalLM(cfg).eval()
        if device != "cpu":
            torch.cuda.manual_seed_all(SEED)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def fingerprint(model_dir: str | Path) -> str:
    """Content id of a generated model, for keying golden outputs. Stdlib only (the host calls it).
    JSON files are canonicalised without `transformers_version`, which changes with no effect on outputs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".json":
            obj = json.loads(data)
            if isinstance(obj, dict):
                obj.pop("transformers_version", None)
            data = json.dumps(obj, sort_keys=True).encode()
        digest.update(f"{path.name}\0{len(data)}\0".encode() + data)
    return "tiny-" + digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="tinymodel.py")
    parser.add_argument("out")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny-llama")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    try:
        ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit:
        return 2
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(out)
    params = make_model(out, tok, ns.shape, ns.device)
    for path in out.iterdir():  # safetensors is written 0600; a non-root server must read it
        path.chmod(0o644)
    print(json.dumps({"out": str(out), "params": params, "vocab": len(tok), "fingerprint": fingerprint(out),
                      "files": sorted(p.name for p in out.iterdir())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

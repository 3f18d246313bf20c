"""Make a tiny random-weight Llama model + BPE tokenizer offline, deterministically.

    python3 tinymodel.py OUT_DIR

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


def make_model(out: Path, tok) -> int:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=HIDDEN * 2,
                      num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                      head_dim=HIDDEN // HEADS, max_position_embeddings=SERVED["max_model_len"], rms_norm_eps=1e-6,
                      rope_theta=10000.0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, initializer_range=0.02)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
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
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python3 tinymodel.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(out)
    params = make_model(out, tok)
    for path in out.iterdir():  # safetensors is written 0600; a non-root server must read it
        path.chmod(0o644)
    print(json.dumps({"out": str(out), "params": params, "vocab": len(tok), "fingerprint": fingerprint(out),
                      "files": sorted(p.name for p in out.iterdir())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Random-weight Llamas of GPU-friendly head_dim, converted to GGUF with the vendored converter.
    python3 gen_models.py PKG_DIR CONVERT_DIR OUT_DIR
Tokenizer: tinymodel.make_tokenizer (same BPE vocab 1024 as the factory's tiny model)."""
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

pkg, conv, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("tinymodel", pkg / "builder/smoke/tinymodel.py")
tm = importlib.util.module_from_spec(spec); spec.loader.exec_module(tm)
import torch

torch.set_num_threads(2)
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

# name -> hidden, layers, heads, kv heads, ffn
SHAPES = {"hd64": (256, 2, 4, 4, 512), "hd128": (512, 2, 4, 2, 1024)}
for name, (hidden, layers, heads, kv, ffn) in SHAPES.items():
    t0 = time.time()
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    tok = tm.make_tokenizer(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, head_dim=hidden // heads, rms_norm_eps=1e-6,
                      max_position_embeddings=4096, rope_theta=10000.0, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
                      initializer_range=0.02)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(d, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    for ot in ("f32", "f16"):
        g = out / f"{name}-{ot}.gguf"
        r = subprocess.run([sys.executable, str(pkg / "builder/smoke/tiny_gguf.py"), str(conv), str(d), str(g),
                            "--outtype", ot], capture_output=True, text=True)
        print(json.dumps({"model": name, "outtype": ot, "rc": r.returncode, "params": n, "gguf": str(g),
                          "size": g.stat().st_size if g.exists() else None, "s": round(time.time() - t0, 1),
                          "shape": dict(hidden=hidden, layers=layers, heads=heads, kv=kv, head_dim=hidden // heads,
                                        ffn=ffn, vocab=len(tok)),
                          "err": r.stderr[-600:] if r.returncode else ""}), flush=True)

"""Convert the factory's tiny HF Llama (tinymodel.py) to GGUF with llama.cpp's own converter.

    python3 tiny_gguf.py CONVERT_DIR HF_DIR OUT.gguf [--outtype f32|f16]

Runs INSIDE a helper container with torch and transformers (the vllm-cpu image: the llama.cpp image
under test has no Python ML stack); never imports the `builder` package.

CONVERT_DIR holds the vendored converter: convert_hf_to_gguf.py, conversion/, gguf-py/ (from
vendor/llama.cpp). Needs torch, transformers, numpy, safetensors, pyyaml, tqdm, requests.

The one thing the stock converter refuses: it identifies a BPE tokenizer's pre-tokenizer by the
sha256 of the token ids of a fixed probe string, and a freshly trained tiny vocabulary matches
no known hash (NotImplementedError "BPE pre-tokenizer was not recognized"). The tiny tokenizer
uses tokenizers' ByteLevel pre-tokenizer with the GPT-2 regex, which is llama.cpp's "gpt-2"
pre-type, so that name is used -- only after checking tokenizer.json really is that shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    convert_dir, hf_dir, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    outtype = argv[4] if len(argv) > 4 and argv[3] == "--outtype" else "f32"

    pre = json.loads((hf_dir / "tokenizer.json").read_text())["pre_tokenizer"]
    if not (pre and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False)):
        print(f"tiny_gguf: unexpected pre_tokenizer {pre!r}; refusing to label it gpt-2", file=sys.stderr)
        return 1

    sys.path.insert(0, str(convert_dir))
    import convert_hf_to_gguf  # puts gguf-py on sys.path itself
    from conversion.base import TextModel

    known = TextModel.get_vocab_base_pre

    def vocab_base_pre(self, tokenizer):
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            return "gpt-2"

    TextModel.get_vocab_base_pre = vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", str(hf_dir), "--outfile", str(out), "--outtype", outtype,
                "--model-name", "tiny"]
    convert_hf_to_gguf.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Export the transformer fixtures in tests/fixtures/transformers/ from Hugging Face `transformers`
with random weights (a config, no download): a BERT-style encoder with a classification head and a
GPT-2-style decoder with its language-model head (tied to the token embeddings), 2 layers, hidden
64, 4 heads. transformers and torch are needed here only, never by onnxprune itself.

    python -m venv --system-site-packages /tmp/hfenv
    /tmp/hfenv/bin/pip install transformers==4.57.6     # torch 2.13.0+cpu from the system site
    /tmp/hfenv/bin/python tools/export_transformer_fixtures.py

Each file: TorchScript exporter (dynamo=False), opset 17, dynamic batch and sequence; its ONNX
Runtime output equals the torch output (atol 1e-4) at two shapes; checked by the ONNX checker.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "transformers"
SEED = 0
VOCAB, HIDDEN, HEADS, LAYERS, FFN, POSITIONS = 96, 64, 4, 2, 128, 64


def bert(base: bool = False):
    from transformers import BertConfig, BertForSequenceClassification

    sizes = {} if base else dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                 num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=POSITIONS)
    config = BertConfig(**sizes, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        attn_implementation="eager")
    model = BertForSequenceClassification(config)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    return model, names, ["logits"], {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}


def gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN,
                        n_positions=POSITIONS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                        attn_implementation="eager")

    class Decoder(torch.nn.Module):
        """GPT2LMHeadModel's forward without its mask helpers (transformers 4.57 builds the causal
        mask with torch.vmap, which the TorchScript exporter cannot trace): token + position
        embeddings, the blocks under a causal mask computed from the sequence length, ln_f, the
        language-model head tied to the token embeddings."""

        def __init__(self):
            super().__init__()
            self.lm = GPT2LMHeadModel(config)

        def forward(self, input_ids, return_dict=False):
            t = self.lm.transformer
            length = input_ids.shape[1]
            h = t.wte(input_ids) + t.wpe(torch.arange(length).unsqueeze(0))
            mask = torch.full((length, length), float("-inf")).triu(1)[None, None]
            for block in t.h:
                h = block(h, attention_mask=mask)[0]
            return (self.lm.lm_head(t.ln_f(h)),)

    return Decoder(), ["input_ids"], ["logits"], {"input_ids": {0: "batch", 1: "sequence"},
                                                   "logits": {0: "batch", 1: "sequence"}}


FIXTURES = {"hf_bert_tiny": bert, "hf_gpt2_tiny": gpt2}
# Not a fixture: BERT-base (hidden 768, 12 layers, vocabulary 30522) for benchmarks/transformer_speed.py.
LARGE = {"bert_base": lambda: bert(base=True)}


def sample(names, batch, seq, seed):
    rng = np.random.default_rng(seed)
    feeds = {"input_ids": rng.integers(0, VOCAB, (batch, seq)), "token_type_ids": rng.integers(0, 2, (batch, seq)),
             "attention_mask": np.ones((batch, seq), dtype=np.int64)}
    feeds["attention_mask"][:, seq - 2:] = 0 if batch > 1 else 1  # some padding
    return {n: feeds[n].astype(np.int64) for n in names}


def export(name: str, out_dir: Path = OUT) -> Path:
    import onnx
    import onnxruntime as ort
    import torch

    from transformers import masking_utils

    # transformers 4.57 builds the 4-D mask with torch.vmap on torch >= 2.6, which the TorchScript
    # exporter cannot trace; its broadcasting version for older torch computes the same mask.
    masking_utils.sdpa_mask = masking_utils.sdpa_mask_older_torch
    torch.manual_seed(SEED)
    model, names, outputs, dynamic = {**FIXTURES, **LARGE}[name]()
    model.eval()
    example = sample(names, 2, 8, SEED)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args)), return_dict=False)[0]

    wrapped = Wrapped(model)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(wrapped, tuple(torch.from_numpy(example[n]) for n in names), buf, input_names=names,
                          output_names=outputs, dynamic_axes=dynamic, opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_version = f"{proto.producer_version} (transformers {__import__('transformers').__version__})"
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch, seq, seed in ((2, 8, 1), (3, 13, 2)):
        feeds = sample(names, batch, seq, seed)
        with torch.no_grad():
            want = wrapped(*(torch.from_numpy(feeds[n]) for n in names)).numpy()
        (got,) = sess.run(None, feeds)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    path.write_bytes(data)
    print(f"{path.name:<20} {len(data):>9,} bytes  opset 17  ir {proto.ir_version}  inputs {names}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated fixture names")
    ap.add_argument("--bert-base", type=Path, metavar="DIR", help="write bert_base.onnx (random weights) to DIR "
                    "instead of the fixtures, for benchmarks/transformer_speed.py")
    args = ap.parse_args(argv)
    if args.bert_base:
        export("bert_base", args.bert_base)
        return 0
    for name in (args.only.split(",") if args.only else FIXTURES):
        export(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

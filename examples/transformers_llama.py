"""sageattention inside a Hugging Face transformers model, two ways, checked against SDPA.

    python examples/transformers_llama.py [--require-gpu]

1. As an attention implementation of transformers' registry:
       sageattention.transformers_attention.register()          # name "sage"
       model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="sage")
2. By patching torch SDPA under a model that uses attn_implementation="sdpa":
       with sageattention.sdpa_patched() as stats: logits = model(input_ids).logits

A tiny Llama (2 layers, hidden 256, 4 query heads and 2 key/value heads of dim 64, random weights)
runs in fp16 on 2 x 333 tokens; the logits of both ways must be within 1e-2 (relative L2) of plain
SDPA, with every attention call routed to sageattn. A batch with left padding shows the fallback:
transformers builds a mask, so those calls stay on SDPA and are counted as such.
"""

import sys

import torch

import sageattention
from sageattention import transformers_attention

from example_utils import gpu_or_exit, parse_args, report

MAX_REL_L2 = 1e-2
LAYERS = 2


def tiny_llama(device, dtype, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         max_position_embeddings=1024)
    torch.manual_seed(seed)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
    return model.to(device=device, dtype=dtype).eval()


def rel_l2(out, ref):
    out, ref = out.double(), ref.double()
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def compare(device, dtype, seed=0):
    """[(case, rel. L2 of the logits against plain SDPA, routing counters as a dict)]."""
    transformers_attention.register()
    model = tiny_llama(device, dtype, seed)
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 1000, (2, 333), generator=gen).to(device)
    padding = torch.ones_like(input_ids)
    padding[0, :40] = 0  # left padding of the first sequence
    rows = []
    with torch.no_grad():
        for name, kwargs in (("no padding", {}), ("left padding (mask)", {"attention_mask": padding})):
            model.set_attn_implementation("sdpa")
            reference = model(input_ids, **kwargs).logits
            with sageattention.sdpa_patched() as stats:
                patched = model(input_ids, **kwargs).logits
            rows.append((f"patch_sdpa, {name}", rel_l2(patched, reference), stats.as_dict()))
            model.set_attn_implementation(transformers_attention.NAME)
            stats = sageattention.sdpa_stats()
            stats.reset()
            registered = model(input_ids, **kwargs).logits
            rows.append((f'attn_implementation="sage", {name}', rel_l2(registered, reference), stats.as_dict()))
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    gpu_or_exit(args, "The transformers example")
    rows = compare("cuda", torch.float16, args.seed)
    return report(rows, ("logits rel L2 vs SDPA",), MAX_REL_L2, calls=LAYERS)


if __name__ == "__main__":
    sys.exit(main())

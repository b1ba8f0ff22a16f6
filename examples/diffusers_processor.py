"""A diffusers-style attention processor on sageattention, checked against torch SDPA.

    python examples/diffusers_processor.py [--require-gpu]

In a diffusers pipeline the processor is installed with
``pipe.transformer.set_attn_processor(SageAttnProcessor())``. diffusers is not needed here:
``TinyAttention`` has the attributes a diffusers ``Attention`` module hands its processor (to_q,
to_k, to_v, to_out, heads, optional q/k norms, residual_connection, rescale_output_factor,
prepare_attention_mask) and a plain SDPA forward of its own as the reference. Each case runs in
fp16 through the processor and through that forward, and in float64 through the forward; the
processor must be as close to float64 as the 8-bit kernels are (rel. L1 < 5e-2; torch SDPA in
fp16 is ~1e-3) and route every unmasked call to sageattn.
"""

import sys

import torch
import torch.nn.functional as F

import sageattention
from sageattention.diffusers_processor import SageAttnProcessor

from example_utils import gpu_or_exit, parse_args, rel_l1, report

MAX_REL_L1 = 8e-2


class TinyAttention(torch.nn.Module):
    """The parts of diffusers' ``Attention`` that a processor uses."""

    def __init__(self, dim, heads, cross_dim=None, qk_norm=False, residual_connection=False,
                 rescale_output_factor=1.0):
        super().__init__()
        self.heads = heads
        self.to_q = torch.nn.Linear(dim, dim)
        self.to_k = torch.nn.Linear(cross_dim or dim, dim)
        self.to_v = torch.nn.Linear(cross_dim or dim, dim)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(dim, dim), torch.nn.Dropout(0.0)])
        self.norm_q = torch.nn.LayerNorm(dim // heads) if qk_norm else None
        self.norm_k = torch.nn.LayerNorm(dim // heads) if qk_norm else None
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.processor = SageAttnProcessor()

    def prepare_attention_mask(self, attention_mask, target_length, batch_size):
        # diffusers: an additive [B, 1, Nk] mask, repeated per head along the batch axis.
        return attention_mask.repeat_interleave(self.heads, dim=0)

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None):
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask)

    def sdpa_forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None):
        """The reference: the same layer written directly around torch SDPA."""
        x = hidden_states
        if x.dim() == 4:
            x = x.flatten(2).transpose(1, 2)
        context = x if encoder_hidden_states is None else encoder_hidden_states
        b, d, h = x.shape[0], self.to_q.out_features, self.heads
        q, k, v = (proj(t).unflatten(-1, (h, d // h)).transpose(1, 2)
                   for proj, t in ((self.to_q, x), (self.to_k, context), (self.to_v, context)))
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        mask = None if attention_mask is None else attention_mask.unsqueeze(1)  # [B, 1, 1, Nk]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.to_out[0](out.transpose(1, 2).reshape(b, -1, d))
        if hidden_states.dim() == 4:
            out = out.transpose(1, 2).reshape(hidden_states.shape)
        if self.residual_connection:
            out = out + hidden_states
        return out / self.rescale_output_factor


def cases(device, dtype, seed=0):
    """(name, module, inputs) triples covering the processor's branches."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    torch.manual_seed(seed)
    self_attn = TinyAttention(256, 4, qk_norm=True)
    cross_attn = TinyAttention(256, 4, cross_dim=96)
    image_attn = TinyAttention(128, 2, residual_connection=True, rescale_output_factor=2.0)
    mask = torch.zeros(2, 1, 77, device=device, dtype=dtype)
    mask[0, :, 60:] = -10000.0  # padding of the first prompt
    yield "self-attention, 333 tokens, q/k norm", self_attn, (randn(2, 333, 256),)
    yield "cross-attention to 77 tokens", cross_attn, (randn(2, 300, 256), randn(2, 77, 96))
    yield "image [B, C, H, W] 16x20, residual", image_attn, (randn(1, 128, 16, 20),)
    yield "cross-attention with a padding mask", cross_attn, (randn(2, 300, 256), randn(2, 77, 96), mask)


def compare(device, dtype, seed=0):
    """[(case, rel. L1 of the processor, of SDPA in `dtype`, routing counters as a dict)] against
    float64."""
    rows = []
    for name, module, inputs in cases(device, dtype, seed):
        module = module.to(device).eval()
        with torch.no_grad():
            module.to(dtype)
            # The processor routes by itself; the patch here only gives this case fresh counters.
            with sageattention.sdpa_patched() as stats:
                ours = module(*inputs)
            sdpa = module.sdpa_forward(*inputs)
            module.double()
            exact = module.sdpa_forward(*(t.double() for t in inputs))
        rows.append((name, rel_l1(ours, exact), rel_l1(sdpa, exact), stats.as_dict()))
    return rows


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    gpu_or_exit(args, "The diffusers processor example")
    rows = compare("cuda", torch.float16, args.seed)
    return report(rows, ("sage rel L1 vs fp64", "SDPA rel L1 vs fp64"), MAX_REL_L1, calls=1)


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy helpers for the CLI: a float64 attention reference in torch (chunked, so a 32K-token
problem fits in GPU memory) and the error metrics of design.md section 6."""

import math

# Score elements (float64) per chunk: 2**25 * 8 bytes = 256 MiB, plus the same again for exp().
_CHUNK_ELEMENTS = 1 << 25


def attention_float64(q, k, v, sm_scale=None, is_causal=False, tensor_layout="HND"):
    """Exact attention in float64 on q's device. Returns (out [B, Hq, Nq, D], lse [B, Hq, Nq]),
    both float64 and in HND layout. Causal is bottom-right aligned; rows that see no key get
    out = 0 and lse = -inf (the library's convention)."""
    import torch  # here, not at module level: error_metrics also serves the torch-free CPU demo

    if tensor_layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    b, hq, nq, d = q.shape
    hkv, nkv = k.shape[1], k.shape[2]
    group = hq // hkv
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    out = torch.empty((b, hq, nq, d), dtype=torch.float64, device=q.device)
    lse = torch.empty((b, hq, nq), dtype=torch.float64, device=q.device)
    rows = max(1, _CHUNK_ELEMENTS // nkv)
    key_index = torch.arange(nkv, device=q.device)
    for bi in range(b):
        for h in range(hq):
            kh = k[bi, h // group].double()
            vh = v[bi, h // group].double()
            for start in range(0, nq, rows):
                stop = min(nq, start + rows)
                s = (q[bi, h, start:stop].double() @ kh.T) * scale
                if is_causal:
                    query_index = torch.arange(start, stop, device=q.device)[:, None]
                    s.masked_fill_(key_index[None, :] > query_index + (nkv - nq), -math.inf)
                row_lse = torch.logsumexp(s, dim=-1)
                # exp(-inf - -inf) would be NaN for rows with no allowed key: give them zeros.
                p = torch.exp(s - torch.where(torch.isfinite(row_lse), row_lse, 0.0)[:, None])
                out[bi, h, start:stop] = p @ vh
                lse[bi, h, start:stop] = row_lse
    return out, lse


def error_metrics(out, ref):
    """cos similarity, relative L1 (sum|o - r| / sum|r|), RMSE and max abs error, as floats.

    Works on torch tensors (any float dtype, any device) and on numpy arrays alike: it only uses
    operations both have, and compares in float64.
    """
    if hasattr(out, "double"):
        o, r = out.double().reshape(-1), ref.double().reshape(-1)
    else:
        import numpy as np

        o = np.asarray(out, dtype=np.float64).reshape(-1)
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
    diff = o - r
    ref_l1 = float(abs(r).sum())
    norms = math.sqrt(float((o * o).sum()) * float((r * r).sum()))
    return {
        "cos": float((o * r).sum()) / norms if norms > 0 else float("nan"),
        "rel_l1": float(abs(diff).sum()) / ref_l1 if ref_l1 > 0 else float("nan"),
        "rmse": math.sqrt(float((diff * diff).mean())),
        "max_abs": float(abs(diff).max()),
    }


def format_metrics(m):
    return (f"cos {m['cos']:.6f}  rel L1 {m['rel_l1']:.3e}  RMSE {m['rmse']:.3e}  "
            f"max abs {m['max_abs']:.3e}")

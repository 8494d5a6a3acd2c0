#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""torch_gptq_ref.py - a torch reference GPTQ, written from docs/reference/algorithms.md section 1 (the
IST/GPTQModel column sweep with lazy batch updates), NOT from qdist's code, timed per layer on the GPU
on the same layer shapes and token count as bench-gptq-layer.c, printing the same line format.

Per block: the fp32 Hessians of the four distinct Linear inputs (H = 2/n sum x x^T over `tokens`
tokens, fed in chunks of bf16 activations upcast to fp32, as GPTQModel's add_batch), then per layer:
dead columns, 1% damping, Cholesky inverse (cholesky, cholesky_inverse, cholesky upper), and the
column sweep in blocks of 128 (min-max asym W4, group parameters from the global W at each group
start). torch's default fp32 matmul (TF32 off) unless --tf32.

  python3 bench/torch_gptq_ref.py [--model llama3-8b] [--tokens 262144] [--chunk 8192] [--reps 1]
"""
import argparse
import time

import torch

SHAPES = {
    "llama3-8b": (4096, 14336, 32, 8, 128),
    "llama3-70b": (8192, 28672, 64, 8, 128),
    "qwen2.5-7b": (3584, 18944, 28, 4, 128),
}


def sync():
    torch.cuda.synchronize()


def minmax_params(x, bits):
    """per row of x [N, g]: GPTQ min-max asym (docs/reference/algorithms.md: range widened to include 0)."""
    maxq = 2 ** bits - 1
    xmin = torch.clamp(x.min(dim=1).values, max=0)
    xmax = torch.clamp(x.max(dim=1).values, min=0)
    both0 = (xmin == 0) & (xmax == 0)
    xmin[both0] = -1
    xmax[both0] = 1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale, zero


def quant(w, scale, zero, maxq):
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return scale * (q - zero), q


def gptq_layer(W, H, bits, gs, blocksize=128, percdamp=0.01):
    W = W.clone().float()
    H = H.clone()
    N, K = W.shape
    maxq = 2 ** bits - 1
    t0 = time.perf_counter()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(K, device=W.device)
    H[idx, idx] += damp
    L = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(H, upper=True)
    sync()
    t_chol = time.perf_counter() - t0

    t0 = time.perf_counter()
    Q = torch.zeros_like(W)
    codes = torch.zeros_like(W)
    losses = torch.zeros(N, device=W.device)
    scale = zero = None
    if gs <= 0:
        scale, zero = minmax_params(W, bits)
    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            c = i1 + i
            w = W1[:, i]
            d = Hinv1[i, i]
            if gs > 0 and c % gs == 0:
                scale, zero = minmax_params(W[:, c:c + gs], bits)
            q, code = quant(w, scale, zero, maxq)
            Q1[:, i] = q
            codes[:, c] = code
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        losses += torch.sum(Losses1, 1) / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    sync()
    t_sweep = time.perf_counter() - t0
    return Q, codes, losses.sum().item(), t_chol, t_sweep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama3-8b", choices=sorted(SHAPES))
    ap.add_argument("--tokens", type=int, default=128 * 2048)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--tf32", action="store_true")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    dev = "cuda"
    hidden, inter, heads, kv, hd = SHAPES[a.model]
    qd, kvd = heads * hd, kv * hd
    in_k = {"attn_in": hidden, "o_in": qd, "mlp_in": hidden, "down_in": inter}
    layers = [("q_proj", qd, hidden, "attn_in"), ("k_proj", kvd, hidden, "attn_in"), ("v_proj", kvd, hidden, "attn_in"),
              ("o_proj", hidden, qd, "o_in"), ("gate_proj", inter, hidden, "mlp_in"), ("up_proj", inter, hidden, "mlp_in"),
              ("down_proj", hidden, inter, "down_in")]
    print(f"# torch_gptq_ref: {a.model} shapes, torch {torch.__version__} on {torch.cuda.get_device_name(0)}, "
          f"{a.tokens} tokens in chunks of {a.chunk}, W{a.bits} g{a.group} asym, block 128, tf32 {a.tf32}", flush=True)
    g = torch.Generator(device=dev)
    g.manual_seed(0)
    # warm-up
    Hw = torch.eye(256, device=dev)
    gptq_layer(torch.randn(256, 256, device=dev) * 0.02, Hw, a.bits, a.group)
    for rep in range(a.reps):
        t_hess = t_chol = t_sweep = 0.0
        H = {}
        for name, K in in_k.items():
            x = (torch.randn(a.chunk, K, device=dev, generator=g) *
                 (1 + 0.25 * (torch.arange(K, device=dev) % 13))).to(torch.bfloat16)
            sync()
            t0 = time.perf_counter()
            Hn = torch.zeros(K, K, device=dev)
            n = 0
            for s in range(0, a.tokens, a.chunk):
                T = min(a.chunk, a.tokens - s)
                inp = x[:T].float()
                Hn *= n / (n + T)
                n += T
                inp = (2 / n) ** 0.5 * inp
                Hn += inp.t().matmul(inp)
            sync()
            dt = time.perf_counter() - t0
            t_hess += dt
            H[name] = Hn
            print(f"hessian {name:<9} K={K:<6} {dt * 1e3:8.1f} ms", flush=True)
            del x
        for name, N, K, inp in layers:
            W = torch.randn(N, K, device=dev, generator=g) * 0.02
            _, _, loss, tc, ts = gptq_layer(W, H[inp], a.bits, a.group)
            t_chol += tc
            t_sweep += ts
            print(f"layer {name:<9} {N:6d} x {K:<6d} upload     0.0 ms  prep    0.0 ms  chol_inv {tc * 1e3:7.1f} ms  "
                  f"sweep {ts * 1e3:7.1f} ms  download    0.0 ms  loss {loss:.4g}", flush=True)
            del W
        peak = torch.cuda.max_memory_allocated() / 1e9
        print(f"BLOCK {a.model} rep {rep} backend torch math {'tf32' if a.tf32 else 'fp32'}: hessian {t_hess:.3f} s, "
              f"chol_inv {t_chol:.3f} s, sweep {t_sweep:.3f} s; GPU work {t_hess + t_chol + t_sweep:.3f} s; "
              f"GPU mem peak {peak:.2f} GB (allocator)", flush=True)


if __name__ == "__main__":
    main()

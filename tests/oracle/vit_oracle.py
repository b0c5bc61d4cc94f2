"""The transformer half of the SAMix step oracle (tests/oracle/samix_step.py, tests/parity/vit.rs):
a ViT written functionally from the DeiT paper's and timm's definition (patch embedding as a
stride-p convolution, class token first, learned position embedding, pre-norm blocks of multi-head
self-attention and a GELU MLP, LayerNorm ε 1e-6, the classifier on the normalised class token).
Shares no code with samix.
"""
import math

import torch
import torch.nn.functional as F

LN_EPS = 1e-6


def layer_norm(p, name, h):
    return F.layer_norm(h, h.shape[-1:], p[f"{name}.weight"], p[f"{name}.bias"], eps=LN_EPS)


def attention(p, block, h, heads):
    """softmax(q·kᵀ/√d)·v per head, then the output projection."""
    n, tokens, width = h.shape
    qkv = F.linear(h, p[f"{block}.attn.qkv.weight"], p[f"{block}.attn.qkv.bias"])
    qkv = qkv.reshape(n, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(width // heads), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(n, tokens, width)
    return F.linear(out, p[f"{block}.attn.proj.weight"], p[f"{block}.attn.proj.bias"])


def mlp(p, block, h):
    hidden = F.gelu(F.linear(h, p[f"{block}.mlp.fc1.weight"], p[f"{block}.mlp.fc1.bias"]))
    return F.linear(hidden, p[f"{block}.mlp.fc2.weight"], p[f"{block}.mlp.fc2.bias"])


def vit_forward(v, net, x, heads, keep_stage=None):
    """Every block of ViT `net` on x (no drop path: the test sets none); returns (the tokens after
    the last block, the patch tokens after 0-based block `keep_stage` laid out on their grid as
    N×C×g×g, or None)."""
    p = v.params
    weight = p[f"{net}.patch_embed.proj.weight"]
    grid = F.conv2d(x, weight, p[f"{net}.patch_embed.proj.bias"], stride=weight.shape[-1])
    n, width, side, _ = grid.shape
    tokens = grid.flatten(2).transpose(1, 2)
    h = torch.cat([p[f"{net}.cls_token"].expand(n, -1, -1), tokens], dim=1) + p[f"{net}.pos_embed"]
    kept = None
    block = 0
    while f"{net}.blocks.{block}.norm1.weight" in p:
        name = f"{net}.blocks.{block}"
        h = h + attention(p, name, layer_norm(p, f"{name}.norm1", h), heads)
        h = h + mlp(p, name, layer_norm(p, f"{name}.norm2", h))
        if block == keep_stage:
            kept = h[:, 1:].transpose(1, 2).reshape(n, width, side, side)
        block += 1
    return h, kept


def vit_pooled(v, net, h):
    """The final LayerNorm's class token: what every head of a ViT reads."""
    return layer_norm(v.params, f"{net}.norm", h)[:, 0]

"""The built-in models: an MLP and a small CNN (per-layer width, kernel, skip) for classification, and a byte-level decoder-only
language model whose layers may differ from each other (FlexiBERT-style heterogeneity).

An LM architecture is a plain list of dicts, one per layer, so a search space can produce it:
``{"op": "attention" | "linear" | "conv", "width": int, "heads": int, "ffn": int, "kernel": int}``
(``kernel`` only for ``conv``). Where one layer's width differs from the previous one, a linear
projection maps the residual stream between them. A homogeneous model is the list of one dict
repeated.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LM_OPS", "build_mlp", "build_cnn", "normalize_cnn_layers", "ByteLM", "normalize_layers", "count_params",
    "lm_flops_per_token", "forward_macs", "lm_param_counts", "lm_heads", "fsdp_units",
]

LM_OPS = ("attention", "linear", "conv")
LAYER_KEYS = ("op", "width", "heads", "ffn", "kernel")


def build_mlp(sample_shape: Sequence[int], n_out: int, hidden: int, layers: int) -> nn.Module:
    mods: list[nn.Module] = [nn.Flatten()]
    width = math.prod(sample_shape)
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


CNN_LAYER_KEYS = ("width", "kernel", "skip")


def _layer_dicts(layers: Any, known: Sequence[str], example: str, short_example: str,
                 context: str = "") -> list[Mapping[str, Any]]:
    """``layers`` as a list of dicts using only ``known`` keys: an int n means n empty dicts (all
    defaults). Errors name the param and show an example."""
    if isinstance(layers, bool):
        raise ValueError(f"param 'layers' must be a layer count or a list of layer dicts, got {layers!r}")
    if isinstance(layers, int):
        if layers < 1:
            raise ValueError(f"param 'layers' must be >= 1{context}, got {layers}")
        return [{} for _ in range(layers)]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"param 'layers' must be a layer count or a non-empty list of dicts like {example}, "
                         f"got {layers!r}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            raise ValueError(f"param 'layers[{i}]' must be a dict like {short_example}, got {layer!r}")
        unknown = sorted(set(layer) - set(known))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in param 'layers[{i}]'; known keys: {list(known)}")
    return list(layers)


def normalize_cnn_layers(layers: Any, channels: int) -> list[dict[str, Any]]:
    """A CNN as a list of ``{width, kernel, skip}`` dicts (missing keys: ``channels``, 3, false),
    or an int: that many 3x3 layers of ``channels`` channels."""
    out = []
    for i, layer in enumerate(_layer_dicts(layers, CNN_LAYER_KEYS, "{width: 32, kernel: 3, skip: false}",
                                           "{width: 32, kernel: 3}", " for model cnn")):
        where = f"layers[{i}]"
        spec = {"width": layer.get("width", channels), "kernel": layer.get("kernel", 3),
                "skip": layer.get("skip", False)}
        for key in ("width", "kernel"):
            if isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < 1:
                raise ValueError(f"param '{where}.{key}' must be an integer >= 1, got {spec[key]!r}")
        if spec["kernel"] % 2 == 0:
            raise ValueError(f"param '{where}.kernel' must be odd (same padding), got {spec['kernel']}; use 3, 5, 7")
        if not isinstance(spec["skip"], bool):
            raise ValueError(f"param '{where}.skip' must be true or false, got {spec['skip']!r}")
        out.append(spec)
    return out


class _ConvBlock(nn.Module):
    """Conv + ReLU, optionally with a residual connection (a 1x1 conv where the width changes)."""

    def __init__(self, in_width: int, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_width, spec["width"], spec["kernel"], padding=spec["kernel"] // 2)
        self.skip = None
        if spec["skip"]:
            self.skip = nn.Identity() if in_width == spec["width"] else nn.Conv2d(in_width, spec["width"], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        return y if self.skip is None else y + self.skip(x)


def build_cnn(sample_shape: Sequence[int], n_out: int, layers: Sequence[Mapping[str, Any]], hidden: int) -> nn.Module:
    """A block per entry of ``layers`` (see ``normalize_cnn_layers``), each followed by 2x2
    max-pooling while the map is at least 4 pixels on a side (so 8x8 digits pool twice), then one
    hidden dense layer."""
    if len(sample_shape) == 2:
        c, (h, w) = 1, sample_shape
        mods: list[nn.Module] = [nn.Unflatten(1, (1, h))]  # (N, H, W) -> (N, 1, H, W)
    else:
        (c, h, w), mods = sample_shape, []
    for spec in layers:
        mods.append(_ConvBlock(c, spec))
        c = spec["width"]
        if min(h, w) >= 4:
            mods.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    mods += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    return nn.Sequential(*mods)


def forward_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass over ``example``, counted from the Linear and
    Conv layers that run (the rest is negligible next to them)."""
    total = 0

    def hook(mod: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features
        else:
            k = mod.weight[0].numel()  # in_channels/groups * kernel area
            total += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return total


def count_params(model: nn.Module) -> tuple[int, int]:
    """(all parameters, parameters outside token and position embeddings)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    return total, total - emb


def normalize_layers(layers: Any, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validate an LM architecture and fill in defaults. ``layers`` is an int (that many copies of
    ``defaults``: a homogeneous model) or a list of dicts whose missing keys come from ``defaults``
    (``op``, ``width``; ``heads`` defaults to ``width // 64`` (at least 1, lowered to a divisor of the width) for attention and to
    ``width`` (depthwise) for conv; ``ffn`` to ``4 * width``; ``kernel`` to 7)."""
    out = []
    for i, layer in enumerate(_layer_dicts(layers, LAYER_KEYS, "{op: attention, width: 64, heads: 2, ffn: 128}",
                                           "{op: attention, width: 64}")):
        where = f"layers[{i}]"
        op = layer.get("op", defaults.get("op", "attention"))
        if op not in LM_OPS:
            raise ValueError(f"param '{where}.op' must be one of {list(LM_OPS)}, got {op!r}")
        spec: dict[str, Any] = {"op": op, "width": layer.get("width", defaults.get("width"))}
        # A study-wide 'heads' is meant for attention; a conv layer stays depthwise unless its own
        # dict says otherwise.
        spec["heads"] = layer.get("heads", None if op == "conv" else defaults.get("heads"))
        if spec["heads"] is None and spec["width"] is not None and isinstance(spec["width"], int):
            spec["heads"] = spec["width"] if op == "conv" else lm_heads(spec["width"], 64)
        spec["ffn"] = layer.get("ffn", defaults.get("ffn"))
        if spec["ffn"] is None and isinstance(spec["width"], int):
            spec["ffn"] = 4 * spec["width"]
        if op == "conv":
            spec["kernel"] = layer.get("kernel", defaults.get("kernel", 7))
        elif "kernel" in layer:
            raise ValueError(f"param '{where}.kernel' applies to op conv only; remove it or set op: conv")
        for key in ("width", "heads", "ffn", "kernel"):
            if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < 1):
                raise ValueError(f"param '{where}.{key}' must be an integer >= 1, got {spec[key]!r}")
        if spec["width"] % spec["heads"]:
            raise ValueError(
                f"param '{where}.heads' must divide its width: width {spec['width']} is not a multiple "
                f"of heads {spec['heads']}; pick heads from the divisors of the width"
            )
        out.append(spec)
    return out


def lm_non_embedding_params(layers: Sequence[Mapping[str, Any]], vocab: int = 256) -> int:
    """Parameters of ``ByteLM(layers, ...)`` outside its token and position embeddings (Kaplan et
    al.'s N; what ``count_params`` returns second), from the normalized layer specs alone, without
    building the model: each block's width projection, norms, mixer and FFN, the final norm and the
    untied head. ``tests/trials`` checks it against the built model."""
    total, width = 0, layers[0]["width"]
    for spec in layers:
        w, f = spec["width"], spec["ffn"]
        total += (width * w if width != w else 0) + 4 * w  # projection (no bias), two LayerNorms
        if spec["op"] == "conv":
            total += 3 * w * w + 3 * w + spec["heads"] * spec["kernel"]  # GLU in, out, shared kernels
        else:
            total += 4 * w * w + 4 * w  # qkv and output projections
        total += 2 * w * f + f + w  # FFN
        width = w
    return total + 2 * width + width * vocab  # final LayerNorm, head (no bias)


def lm_param_counts(layers: Sequence[Mapping[str, Any]], context: int, vocab: int = 256) -> tuple[int, int]:
    """(all, non-embedding) parameters of ``ByteLM(layers, context, vocab=vocab)``, what
    ``count_params`` returns for the built model, from the layer specs alone (a planner needs N
    before any trial ran): ``lm_non_embedding_params`` plus the token and position embeddings.
    A spec without ``op`` is an attention layer, as in ``normalize_layers``."""
    non_embedding = lm_non_embedding_params([{"op": "attention", **spec} for spec in layers], vocab)
    return non_embedding + (vocab + context) * layers[0]["width"], non_embedding


def lm_heads(width: int, head_dim: int) -> int:
    """Attention heads for a layer of ``width`` at a target ``head_dim``: ``width // head_dim``
    (at least 1), lowered until it divides the width, as ``ByteLM`` requires."""
    h = max(1, width // head_dim)
    while width % h:
        h -= 1
    return h


def lm_flops_per_token(layers: Sequence[Mapping[str, Any]], context: int, n_non_embedding: int) -> float:
    """Training FLOPs per token, Kaplan et al.'s estimate: 6 per non-embedding parameter (forward
    2, backward 4) plus 6 * context * width per attention-like layer for the score and mixing
    products, plus the conv kernels' reuse across the channels of a head."""
    flops = 6.0 * n_non_embedding
    for spec in layers:
        if spec["op"] in ("attention", "linear"):
            flops += 6.0 * context * spec["width"]
        else:
            flops += 6.0 * (spec["width"] - spec["heads"]) * spec["kernel"]
    return flops


class _SelfAttention(nn.Module):
    """Causal multi-head self-attention: softmax, or linear attention with the elu+1 feature map
    (Katharopoulos et al. 2020) computed in its parallel form, which trains as fast as softmax at
    short contexts and equals the recurrent O(T) form exactly."""

    def __init__(self, width: int, heads: int, dropout: float, linear: bool) -> None:
        super().__init__()
        self.heads, self.dropout, self.linear = heads, dropout, linear
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        if self.linear:
            q, k = F.elu(q) + 1, F.elu(k) + 1
            scores = (q @ k.transpose(-2, -1)).tril()
            y = (scores @ v) / (scores.sum(-1, keepdim=True) + 1e-6)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        return self.out(y.transpose(1, 2).reshape(b, t, w))


class _CausalConv(nn.Module):
    """Gated causal 1-D convolution: GLU input projection, a depthwise kernel over the past
    ``kernel`` positions whose weights are shared by the channels of each head (lightweight
    convolution, Wu et al. 2019; heads == width is plain depthwise), output projection."""

    def __init__(self, width: int, heads: int, kernel: int) -> None:
        super().__init__()
        self.width, self.heads, self.kernel = width, heads, kernel
        self.inp = nn.Linear(width, 2 * width)
        self.weight = nn.Parameter(torch.empty(heads, 1, kernel))
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.glu(self.inp(x), dim=-1).transpose(1, 2)  # (batch, width, time)
        weight = self.weight.repeat_interleave(self.width // self.heads, dim=0)
        h = F.conv1d(F.pad(h, (self.kernel - 1, 0)), weight, groups=self.width)
        return self.out(h.transpose(1, 2))


class _Block(nn.Module):
    def __init__(self, spec: Mapping[str, Any], in_width: int, dropout: float) -> None:
        super().__init__()
        w = spec["width"]
        self.proj = nn.Linear(in_width, w, bias=False) if in_width != w else None
        self.norm1 = nn.LayerNorm(w)
        if spec["op"] == "conv":
            self.mix: nn.Module = _CausalConv(w, spec["heads"], spec["kernel"])
        else:
            self.mix = _SelfAttention(w, spec["heads"], dropout, linear=spec["op"] == "linear")
        self.norm2 = nn.LayerNorm(w)
        self.ffn = nn.Sequential(nn.Linear(w, spec["ffn"]), nn.GELU(), nn.Linear(spec["ffn"], w))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x)
        x = x + self.drop(self.mix(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class ByteLM(nn.Module):
    """Decoder-only LM over bytes (vocabulary 256): token and learned position embeddings at the
    first layer's width, pre-norm residual blocks as ``layers`` says, final norm, untied head."""

    def __init__(self, layers: Sequence[Mapping[str, Any]], context: int, dropout: float = 0.0,
                 vocab: int = 256) -> None:
        super().__init__()
        self.layers = [dict(spec) for spec in layers]
        self.context = context
        width = layers[0]["width"]
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        blocks = []
        for spec in layers:
            blocks.append(_Block(spec, width, dropout))
            width = spec["width"]
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2: N(0, 0.02), with the projections that write into the residual stream scaled by
        # 1/sqrt(2 * depth) so the stream's variance does not grow with depth.
        residual_std = 0.02 / math.sqrt(2 * len(self.blocks))
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".norm" in name or name.startswith("norm"):
                nn.init.ones_(p)
            elif name.endswith("mix.weight"):
                nn.init.normal_(p, 1.0 / p.shape[-1], 0.02)
            elif name.endswith(("mix.out.weight", "ffn.2.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The submodules FSDP shards as units of their own (each one's weights gathered just before it
    runs and freed after, so a rank holds one block whole at a time): a ``ByteLM``'s blocks. Other
    models are one unit, the root."""
    blocks = getattr(model, "blocks", None)
    return list(blocks) if isinstance(blocks, nn.ModuleList) else []

"""Shared helpers for the StrapVitService model tooling.

- ``ViT``: a small Vision Transformer whose ONNX export uses standard ops only
  (Conv, MatMul, Softmax, Reshape, Transpose, LayerNormalization, Erf, ...).
- ``export_onnx``: opset-17 export with a dynamic batch dimension.
- ``find_tokens_tensor``: the output name of the Add node that adds the
  position-embedding initializer (the ``tokens.tensor`` of model.json).
- ``OnnxNumpyRunner``: a tiny reference evaluator for the ops these exports use,
  so the exported graph can be checked numerically without onnxruntime.
- IDX (gzipped) readers/writers for Fashion-MNIST.

Run with /usr/bin/python3 (Debian python3-torch 1.13, python3-onnx 1.12).
"""
from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention written with plain matmul/softmax."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                      # [B, H, T, hd]
        att = torch.matmul(q * self.scale, k.transpose(-2, -1))  # [B, H, T, T]
        if attn_bias is not None:  # training/evaluation only (key masking); never traced into the ONNX export
            att = att + attn_bias
        att = torch.softmax(att, dim=-1)
        out = torch.matmul(att, v)                            # [B, H, T, hd]
        out = out.transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact GELU (exports via Erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, attn_bias=None):
        x = x + self.attn(self.norm1(x), attn_bias)
        x = x + self.mlp(self.norm2(x))
        return x


class ViT(nn.Module):
    def __init__(self, image_size=28, patch_size=4, in_chans=1, num_classes=10,
                 dim=64, depth=4, heads=4, mlp_ratio=2.0, stem_channels=0, stem_kind="conv3"):
        super().__init__()
        assert image_size % patch_size == 0
        self.num_patches = (image_size // patch_size) ** 2
        self.dim = dim
        # Optional convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see better"):
        # one 3x3 stride-1 convolution + GELU before the patchify convolution. Each token then sees its own
        # patch plus a 1-pixel border, still centred on its patch, and the tiny ViT gains the locality prior
        # it otherwise has to learn from data. 0 = plain ViT (patchify only).
        #
        # stem_kind "local": a 2x2 stride-2 convolution + GELU, then a (patch/2) x (patch/2) stride-(patch/2)
        # patchify. The embedding is still nonlinear, but a token's receptive field is exactly its own patch, so a
        # pixel patch reaches no more tokens than with a plain patchify (what masking defenses and certification
        # need: a 3x3 stem lets a 4x4 patch touch 3x3 tokens instead of 2x2).
        embed_in = stem_channels if stem_channels > 0 else in_chans
        embed_kernel = patch_size
        if stem_channels <= 0:
            self.stem = nn.Identity()
        elif stem_kind == "conv3":
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_channels, kernel_size=3, padding=1), nn.GELU())
        elif stem_kind == "local":
            assert patch_size % 2 == 0, "a local stem needs an even patch size"
            self.stem = nn.Sequential(nn.Conv2d(in_chans, stem_channels, kernel_size=2, stride=2), nn.GELU())
            embed_kernel = patch_size // 2
        else:
            raise ValueError(f"unknown stem kind {stem_kind!r}")
        self.patch_embed = nn.Conv2d(embed_in, dim, kernel_size=embed_kernel, stride=embed_kernel)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        # No-op module: a forward hook on it sees the [N, T+1, D] tokens after position embedding.
        self.token_tap = nn.Identity()
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.bias)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """key_mask: optional bool [B, P] over the patch tokens (row-major grid), True = masked. A masked token
        is excluded as an attention key in every block (-inf logit), so no unmasked token (in particular the
        class token) ever reads it: the class-token output equals that of the sequence with those tokens dropped.
        Used for training/evaluation only; the ONNX export calls forward(x) and is unchanged by it."""
        b = x.shape[0]
        x = self.patch_embed(self.stem(x))      # [B, D, h, w]
        x = x.flatten(2).transpose(1, 2)        # [B, P, D]
        cls = self.cls_token.expand(b, 1, self.dim)  # [B, 1, D]
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.token_tap(x)                   # [B, P+1, D]
        attn_bias = None
        if key_mask is not None:
            km = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=x.device), key_mask.bool()], dim=1)
            attn_bias = torch.zeros(b, 1, 1, km.shape[1], dtype=x.dtype, device=x.device)
            attn_bias = attn_bias.masked_fill(km[:, None, None, :], float("-inf"))
        for blk in self.blocks:
            x = blk(x, attn_bias)
        x = self.norm(x)
        return self.head(x[:, 0])

    def forward_dropped(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Reference for key masking: run the blocks on [class token + patch tokens ``keep``] only
        (keep: long indices into the P patch tokens, the same for the whole batch)."""
        b = x.shape[0]
        x = self.patch_embed(self.stem(x)).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(b, 1, self.dim)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = x[:, torch.cat([torch.zeros(1, dtype=torch.long), keep.long() + 1])]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_window_mask(batch: int, grid: int, count_probs, sides, gen: torch.Generator, overhang: int = 1):
    """Bool [batch, grid*grid] key mask of random square token windows (True = masked).

    Per image the number of windows k is drawn with probabilities ``count_probs`` (index = k); each window has a
    side drawn uniformly from ``sides`` and a top-left corner drawn uniformly from [-overhang, grid - side +
    overhang] in both directions, clipped to the grid (so windows at the border may be cut down). Windows may
    overlap.
    """
    probs = torch.tensor(count_probs, dtype=torch.float)
    k = torch.multinomial(probs.expand(batch, -1), 1, generator=gen).squeeze(1)   # [B]
    ar = torch.arange(grid)
    mask = torch.zeros(batch, grid, grid, dtype=torch.bool)
    side_t = torch.tensor(sides, dtype=torch.long)
    for w in range(len(count_probs) - 1):
        s = side_t[torch.randint(0, len(sides), (batch,), generator=gen)]                      # [B]
        span = grid - s + 2 * overhang + 1
        r0 = (torch.rand(batch, generator=gen) * span).long() - overhang
        c0 = (torch.rand(batch, generator=gen) * span).long() - overhang
        rows = (ar[None] >= r0[:, None]) & (ar[None] < (r0 + s)[:, None])                      # [B, grid]
        cols = (ar[None] >= c0[:, None]) & (ar[None] < (c0 + s)[:, None])
        win = rows[:, :, None] & cols[:, None, :]
        mask |= win & (k > w)[:, None, None]
    return mask.reshape(batch, grid * grid)


def fixed_window_mask(batch: int, grid: int, windows: int, side: int, gen: torch.Generator):
    """Bool [batch, grid*grid]: ``windows`` square side x side windows per image, each fully inside the grid at a
    uniformly random position (windows may overlap). Used for the masked-accuracy evaluation."""
    ar = torch.arange(grid)
    mask = torch.zeros(batch, grid, grid, dtype=torch.bool)
    for _ in range(windows):
        r0 = torch.randint(0, grid - side + 1, (batch,), generator=gen)
        c0 = torch.randint(0, grid - side + 1, (batch,), generator=gen)
        rows = (ar[None] >= r0[:, None]) & (ar[None] < (r0 + side)[:, None])
        cols = (ar[None] >= c0[:, None]) & (ar[None] < (c0 + side)[:, None])
        mask |= rows[:, :, None] & cols[:, None, :]
    return mask.reshape(batch, grid * grid)


def load_onnx_weights(model: "ViT", onnx_path: str) -> list:
    """Copy the initializers of an ONNX file exported from this ViT (export_onnx) into ``model``.

    Parameters keep their torch names in the export except the Linear weights of the blocks, which the exporter
    folds into transposed, anonymous MatMul initializers (``onnx::MatMul_519``); those are found through the
    MatMul node that consumes them, whose name is the module path (``/blocks.0/attn/qkv/MatMul``). Every torch
    parameter must be filled exactly once with a matching shape. Returns the list of (torch name, onnx name).
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    params = dict(model.named_parameters())
    source = {}
    for name in params:
        if name in inits:
            source[name] = (name, inits[name])
    for node in m.graph.node:
        if node.op_type != "MatMul":
            continue
        for inp in node.input:
            if inp in inits and inp not in params:
                parts = node.name.strip("/").split("/")
                assert parts[-1].startswith("MatMul"), node.name
                tname = ".".join(parts[:-1]) + ".weight"
                assert tname in params and tname not in source, (node.name, tname)
                source[tname] = (inp, inits[inp].T)
    missing = sorted(set(params) - set(source))
    if missing:
        raise RuntimeError(f"parameters not found in {onnx_path}: {missing}")
    with torch.no_grad():
        for name, p in params.items():
            arr = source[name][1]
            if tuple(arr.shape) != tuple(p.shape):
                raise RuntimeError(f"{name}: onnx {source[name][0]} has shape {arr.shape}, torch {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.array(arr, dtype=np.float32, copy=True)))
    return [(k, v[0]) for k, v in source.items()]


# --------------------------------------------------------------------------------------
# Export and graph inspection
# --------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: str, example: torch.Tensor, input_name: str, output_name: str):
    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model, (example,), path,
            opset_version=17,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}},
            do_constant_folding=True,
        )


def find_tokens_tensor(onnx_model, pos_embed_values: np.ndarray) -> str:
    """Name of the output of the Add node that consumes the position-embedding initializer.

    The initializer is identified by name ("pos_embed") and confirmed by value, so a renamed
    initializer is still found.
    """
    from onnx import numpy_helper

    g = onnx_model.graph
    pos_names = set()
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.shape == pos_embed_values.shape and np.array_equal(arr, pos_embed_values):
            pos_names.add(init.name)
    for node in g.node:  # Constant nodes holding the same values also count
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    arr = numpy_helper.to_array(a.t)
                    if arr.shape == pos_embed_values.shape and np.array_equal(arr, pos_embed_values):
                        pos_names.add(node.output[0])
    if not pos_names:
        raise RuntimeError("position-embedding initializer not found in the ONNX graph")
    adds = [n for n in g.node if n.op_type == "Add" and any(i in pos_names for i in n.input)]
    if len(adds) != 1:
        raise RuntimeError(f"expected exactly one Add consuming {pos_names}, found {len(adds)}")
    return adds[0].output[0]


def inferred_shape(onnx_model, tensor_name: str):
    """Shape of a tensor from ONNX shape inference: list of int or str (symbolic) dims."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(onnx_model, data_prop=True)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        if vi.name == tensor_name:
            dims = []
            for d in vi.type.tensor_type.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
            return dims
    return None


def tap_shape(model: ViT, x: torch.Tensor):
    """Run the model in torch with a forward hook on token_tap; return the tokens' shape."""
    seen = {}
    h = model.token_tap.register_forward_hook(lambda m, i, o: seen.__setitem__("shape", tuple(o.shape)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return seen["shape"]


# --------------------------------------------------------------------------------------
# Minimal numpy evaluator for the ops these exports produce (used because onnxruntime
# is not installable here; it runs the *exported file*, not the torch module).
# --------------------------------------------------------------------------------------


class OnnxNumpyRunner:
    def __init__(self, onnx_model):
        from onnx import numpy_helper

        self.m = onnx_model
        self.consts = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
        self._nh = numpy_helper

    @staticmethod
    def _attrs(node):
        import onnx

        out = {}
        for a in node.attribute:
            out[a.name] = onnx.helper.get_attribute_value(a)
        return out

    def run(self, feeds: dict, outputs=None) -> dict:
        env = dict(self.consts)
        env.update({k: np.asarray(v) for k, v in feeds.items()})
        for node in self.m.graph.node:
            a = self._attrs(node)
            ins = [env[i] if i != "" else None for i in node.input]
            res = self._op(node.op_type, ins, a)
            if not isinstance(res, (list, tuple)):
                res = [res]
            for name, val in zip(node.output, res):
                env[name] = val
        names = outputs or [o.name for o in self.m.graph.output]
        return {n: env[n] for n in names}

    def _op(self, op, x, a):
        if op == "Constant":
            return self._nh.to_array(a["value"])
        if op == "Identity":
            return x[0]
        if op == "Add":
            return x[0] + x[1]
        if op == "Sub":
            return x[0] - x[1]
        if op == "Mul":
            return x[0] * x[1]
        if op == "Div":
            if np.issubdtype(x[0].dtype, np.integer):
                return x[0] // x[1]
            return x[0] / x[1]
        if op == "Pow":
            return np.power(x[0], x[1])
        if op == "Sqrt":
            return np.sqrt(x[0])
        if op == "Erf":
            return torch.erf(torch.from_numpy(np.ascontiguousarray(x[0]))).numpy()
        if op == "Equal":
            return x[0] == x[1]
        if op == "Where":
            return np.where(x[0], x[1], x[2])
        if op == "Cast":
            import onnx

            return x[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
        if op == "Shape":
            return np.array(x[0].shape, dtype=np.int64)
        if op == "ConstantOfShape":
            v = self._nh.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            return np.full(tuple(int(s) for s in x[0]), v.reshape(-1)[0], dtype=v.dtype)
        if op == "Gather":
            return np.take(x[0], x[1], axis=a.get("axis", 0))
        if op == "Unsqueeze":
            out = x[0]
            axes = sorted(int(i) for i in x[1])
            rank = out.ndim + len(axes)
            for ax in sorted(ax % rank for ax in axes):
                out = np.expand_dims(out, ax)
            return out
        if op == "Squeeze":
            if len(x) > 1 and x[1] is not None:
                return np.squeeze(x[0], axis=tuple(int(i) for i in x[1]))
            return np.squeeze(x[0])
        if op == "Concat":
            return np.concatenate(x, axis=a["axis"])
        if op == "Reshape":
            shape = [int(s) for s in x[1]]
            if not a.get("allowzero", 0):
                shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return x[0].reshape(shape)
        if op == "Expand":
            shape = tuple(int(s) for s in x[1])
            return x[0] * np.ones(shape, dtype=x[0].dtype)
        if op == "Transpose":
            return np.transpose(x[0], a.get("perm"))
        if op == "Slice":
            data, starts, ends = x[0], x[1], x[2]
            axes = x[3] if len(x) > 3 and x[3] is not None else np.arange(len(starts))
            steps = x[4] if len(x) > 4 and x[4] is not None else np.ones(len(starts), np.int64)
            sl = [slice(None)] * data.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                ax = int(ax) % data.ndim
                n = data.shape[ax]
                s, e = int(max(min(s, 2**62), -2**62)), int(max(min(e, 2**62), -2**62))
                sl[ax] = slice(*slice(s, e, int(st)).indices(n))
            return data[tuple(sl)]
        if op == "Split":
            axis = a.get("axis", 0)
            if len(x) > 1 and x[1] is not None:
                idx = np.cumsum(x[1])[:-1]
                return np.split(x[0], idx, axis=axis)
            raise NotImplementedError("Split without sizes")
        if op == "MatMul":
            return np.matmul(x[0], x[1])
        if op == "Gemm":
            A = x[0].T if a.get("transA", 0) else x[0]
            B = x[1].T if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            return y.astype(np.float32)
        if op == "Softmax":
            ax = a.get("axis", -1)
            z = x[0] - x[0].max(axis=ax, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=ax, keepdims=True)
        if op == "ReduceMean":
            axes = a.get("axes") or (tuple(int(i) for i in x[1]) if len(x) > 1 else None)
            return x[0].mean(axis=tuple(axes) if axes is not None else None, keepdims=bool(a.get("keepdims", 1)))
        if op == "LayerNormalization":
            ax = a.get("axis", -1) % x[0].ndim
            axes = tuple(range(ax, x[0].ndim))
            mu = x[0].mean(axis=axes, keepdims=True)
            var = ((x[0] - mu) ** 2).mean(axis=axes, keepdims=True)
            y = (x[0] - mu) / np.sqrt(var + a.get("epsilon", 1e-5))
            y = y * x[1]
            if len(x) > 2 and x[2] is not None:
                y = y + x[2]
            return y.astype(np.float32)
        if op == "Conv":
            return self._conv(x, a)
        raise NotImplementedError(f"op {op} not supported by the numpy evaluator")

    @staticmethod
    def _conv(x, a):
        X, W = x[0], x[1]
        B = x[2] if len(x) > 2 else None
        k = a.get("kernel_shape", list(W.shape[2:]))
        s = a.get("strides", [1, 1])
        pads = a.get("pads", [0, 0, 0, 0])
        assert a.get("group", 1) == 1 and all(d == 1 for d in a.get("dilations", [1, 1]))
        if any(pads):
            X = np.pad(X, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        n, c, h, w = X.shape
        oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
        cols = np.empty((n, c, k[0], k[1], oh, ow), dtype=X.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                cols[:, :, i, j] = X[:, :, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1]]
        y = np.einsum("nckluv,ockl->nouv", cols, W)
        if B is not None:
            y = y + B.reshape(1, -1, 1, 1)
        return y.astype(np.float32)


# --------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------


def read_idx_images(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    assert magic == 2051, magic
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def read_idx_labels(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    assert magic == 2049, magic
    return np.frombuffer(data, dtype=np.uint8, offset=8).copy()


def _gzip_write(path: str, payload: bytes):
    # mtime=0 and no file name in the header: byte-identical output on every run.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(payload)


def write_idx_images(path: str, images: np.ndarray):
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n, rows, cols = images.shape
    _gzip_write(path, struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes())


def write_idx_labels(path: str, labels: np.ndarray):
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    _gzip_write(path, struct.pack(">II", 2049, labels.shape[0]) + labels.tobytes())


FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MEAN = 0.286
FASHION_STD = 0.353

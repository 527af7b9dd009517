"""Test support: the transformers LeViT layout, made and evaluated without levit_bench's model code.

Written from transformers' `modeling_levit.py` and `configuration_levit.py`: the key names of
`LevitForImageClassificationWithTeacher`, its per-stage layer numbering (residual attention and
MLP layers, then the un-wrapped subsampling attention and its MLP at the end of every stage
but the last), and its attention-bias index buffers, which number each (|dy|, |dx|) offset in
order of first appearance. `random_state_dict` makes such a checkpoint from a config.json
alone and `logits` evaluates one with functional ops only, so a test compares levit_bench's
converter and model against this reading of transformers, never against levit_bench itself.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

DEFAULTS = {"image_size": 224, "patch_size": 16, "hidden_sizes": [128, 256, 384], "num_attention_heads": [4, 8, 12],
            "depths": [4, 4, 4], "key_dim": [16, 16, 16], "attention_ratio": [2, 2, 2], "mlp_ratio": [2, 2, 2]}


def hub_config(hidden_sizes, num_attention_heads, depths, key_dim, num_labels=10, **extra) -> dict:
    """A config.json as the facebook/levit-* repositories publish it (sizes, labels, class)."""
    return {"architectures": ["LevitForImageClassificationWithTeacher"], "model_type": "levit",
            "hidden_sizes": hidden_sizes, "num_attention_heads": num_attention_heads, "depths": depths,
            "key_dim": key_dim, "id2label": {str(i): f"class {i}" for i in range(num_labels)}, **extra}


# the five facebook/levit-* configurations (transformers' conversion script, the paper's Table 2)
HUB_CONFIGS = {
    "levit_128s": hub_config([128, 256, 384], [4, 6, 8], [2, 3, 4], [16, 16, 16]),
    "levit_128": hub_config([128, 256, 384], [4, 8, 12], [4, 4, 4], [16, 16, 16]),
    "levit_192": hub_config([192, 288, 384], [3, 5, 6], [4, 4, 4], [32, 32, 32]),
    "levit_256": hub_config([256, 384, 512], [4, 6, 8], [4, 4, 4], [32, 32, 32]),
    "levit_384": hub_config([384, 512, 768], [6, 9, 12], [4, 4, 4], [32, 32, 32], drop_path_rate=0.1),
}


def _get(config: dict, key: str):
    return config.get(key, DEFAULTS[key])


def bias_index(q_res: int, k_res: int, stride: int) -> torch.Tensor:
    offsets: dict[tuple[int, int], int] = {}
    idxs = [offsets.setdefault((abs(qy * stride - ky), abs(qx * stride - kx)), len(offsets))
            for qy, qx in itertools.product(range(q_res), repeat=2)
            for ky, kx in itertools.product(range(k_res), repeat=2)]
    return torch.tensor(idxs).view(q_res * q_res, k_res * k_res)


def _layers(config: dict):
    """(stage, index, kind, dims) for every layer of every stage, in transformers' order."""
    sizes, heads, depths = _get(config, "hidden_sizes"), _get(config, "num_attention_heads"), _get(config, "depths")
    kd, ar, mr = _get(config, "key_dim"), _get(config, "attention_ratio"), _get(config, "mlp_ratio")
    res = _get(config, "image_size") // _get(config, "patch_size")
    for s, depth in enumerate(depths):
        for j in range(depth):
            yield s, 2 * j, "attn", dict(dim=sizes[s], heads=heads[s], kd=kd[s], ar=ar[s], res=res)
            yield s, 2 * j + 1, "mlp", dict(dim=sizes[s], hidden=sizes[s] * mr[s])
        if s + 1 < len(depths):
            out_res = (res - 1) // 2 + 1
            yield s, 2 * depth, "subsample", dict(dim=sizes[s], out=sizes[s + 1], heads=sizes[s] // kd[0], kd=kd[0],
                                                  ar=4, res=res, out_res=out_res)
            yield s, 2 * depth + 1, "mlp", dict(dim=sizes[s + 1], hidden=sizes[s + 1] * 2)
            res = out_res


def random_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of a LevitForImageClassificationWithTeacher, random; BN statistics and affine too."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def weight(key: str, *shape: int) -> None:
        fan_in = 1
        for n in shape[1:]:
            fan_in *= n
        sd[key] = torch.randn(shape, generator=g) / fan_in**0.5

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = 1 + 0.2 * torch.randn(c, generator=g)
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    def linear_bn(prefix: str, cin: int, cout: int) -> None:
        weight(f"{prefix}.linear.weight", cout, cin)
        bn(f"{prefix}.batch_norm", cout)

    widths = [3] + [_get(config, "hidden_sizes")[0] // d for d in (8, 4, 2, 1)]
    for i in range(4):
        prefix = f"levit.patch_embeddings.embedding_layer_{i + 1}"
        weight(f"{prefix}.convolution.weight", widths[i + 1], widths[i], 3, 3)
        bn(f"{prefix}.batch_norm", widths[i + 1])
    for s, index, kind, d in _layers(config):
        prefix = f"levit.encoder.stages.{s}.layers.{index}"
        if kind == "mlp":
            linear_bn(f"{prefix}.module.linear_up", d["dim"], d["hidden"])
            linear_bn(f"{prefix}.module.linear_down", d["hidden"], d["dim"])
            continue
        h, kd, ar = d["heads"], d["kd"], d["ar"]
        if kind == "attn":
            prefix += ".module"
            linear_bn(f"{prefix}.queries_keys_values", d["dim"], h * (2 * kd + ar * kd))
            linear_bn(f"{prefix}.projection", h * ar * kd, d["dim"])
            idxs = bias_index(d["res"], d["res"], 1)
        else:
            linear_bn(f"{prefix}.keys_values", d["dim"], h * (kd + ar * kd))
            linear_bn(f"{prefix}.queries", d["dim"], h * kd)
            linear_bn(f"{prefix}.projection", h * ar * kd, d["out"])
            idxs = bias_index(d["out_res"], d["res"], 2)
        sd[f"{prefix}.attention_biases"] = torch.randn(h, int(idxs.max()) + 1, generator=g)
        sd[f"{prefix}.attention_bias_idxs"] = idxs
    classes, dim = len(config["id2label"]), _get(config, "hidden_sizes")[-1]
    for head in ("classifier", "classifier_distill"):
        bn(f"{head}.batch_norm", dim)
        weight(f"{head}.linear.weight", classes, dim)
        sd[f"{head}.linear.bias"] = 0.1 * torch.randn(classes, generator=g)
    return sd


def _bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, eps=1e-5)


def _linear_bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    y = x @ sd[f"{prefix}.linear.weight"].T
    return _bn(y.flatten(0, 1), sd, f"{prefix}.batch_norm").reshape(y.shape)


def _attention(q, k, v, biases, idxs, kd):
    scores = (q @ k.transpose(-2, -1) * kd**-0.5 + biases[:, idxs]).softmax(dim=-1)
    out = (scores @ v).transpose(1, 2)
    return F.hardswish(out.reshape(out.shape[0], out.shape[1], -1))


@torch.no_grad()
def logits(sd: dict[str, torch.Tensor], config: dict, images: torch.Tensor) -> torch.Tensor:
    """Eval-mode logits of a transformers-layout state dict: the mean of the two classifiers."""
    x = images
    for i in range(4):
        prefix = f"levit.patch_embeddings.embedding_layer_{i + 1}"
        x = _bn(F.conv2d(x, sd[f"{prefix}.convolution.weight"], stride=2, padding=1), sd, f"{prefix}.batch_norm")
        x = F.hardswish(x) if i < 3 else x
    x = x.flatten(2).transpose(1, 2)
    b = x.shape[0]
    for s, index, kind, d in _layers(config):
        prefix = f"levit.encoder.stages.{s}.layers.{index}"
        if kind == "mlp":
            up = F.hardswish(_linear_bn(x, sd, f"{prefix}.module.linear_up"))
            x = x + _linear_bn(up, sd, f"{prefix}.module.linear_down")
        elif kind == "attn":
            prefix += ".module"
            n, kd = x.shape[1], d["kd"]
            qkv = _linear_bn(x, sd, f"{prefix}.queries_keys_values").view(b, n, d["heads"], -1)
            q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split([kd, kd, d["ar"] * kd], dim=3))
            out = _attention(q, k, v, sd[f"{prefix}.attention_biases"], bias_index(d["res"], d["res"], 1), kd)
            x = x + _linear_bn(out, sd, f"{prefix}.projection")
        else:
            n, kd, res = x.shape[1], d["kd"], d["res"]
            kv = _linear_bn(x, sd, f"{prefix}.keys_values").view(b, n, d["heads"], -1)
            k, v = (t.permute(0, 2, 1, 3) for t in kv.split([kd, d["ar"] * kd], dim=3))
            sub = x.view(b, res, res, -1)[:, ::2, ::2].reshape(b, -1, x.shape[-1])
            q = _linear_bn(sub, sd, f"{prefix}.queries").view(b, -1, d["heads"], kd).permute(0, 2, 1, 3)
            idxs = bias_index(d["out_res"], res, 2)
            x = _linear_bn(_attention(q, k, v, sd[f"{prefix}.attention_biases"], idxs, kd), sd, f"{prefix}.projection")
    pooled = x.mean(dim=1)
    heads = [_bn(pooled, sd, f"{h}.batch_norm") @ sd[f"{h}.linear.weight"].T + sd[f"{h}.linear.bias"]
             for h in ("classifier", "classifier_distill")]
    return (heads[0] + heads[1]) / 2

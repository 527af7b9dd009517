"""The LeViT family against paper Table 2 and Section 4."""

import pytest
import torch

from levit_bench.models.levit import LEVIT_CONFIGS, AttentionBias, build_levit
from levit_bench.registry import get_spec

from levit_reference import official_logits, native_to_official, randomise

# Paper Table 2: (C, N) per stage, heads of the two shrinking attentions, depths, drop path.
# One correction: Table 2 prints N=18 for LeViT-384's second shrinking attention, but its own
# rule N = C/D gives 512/32 = 16, as do the official code and the 39.1M parameters of Table 3
# (18 heads would make it 39.52M).
TABLE_2 = {
    "levit_128s": dict(D=16, C=(128, 256, 384), N=(4, 6, 8), shrink_N=(8, 16), depth=(2, 3, 4), p=0.0),
    "levit_128": dict(D=16, C=(128, 256, 384), N=(4, 8, 12), shrink_N=(8, 16), depth=(4, 4, 4), p=0.0),
    "levit_192": dict(D=32, C=(192, 288, 384), N=(3, 5, 6), shrink_N=(6, 9), depth=(4, 4, 4), p=0.0),
    "levit_256": dict(D=32, C=(256, 384, 512), N=(4, 6, 8), shrink_N=(8, 12), depth=(4, 4, 4), p=0.0),
    "levit_384": dict(D=32, C=(384, 512, 768), N=(6, 9, 12), shrink_N=(12, 16), depth=(4, 4, 4), p=0.1),
}


@pytest.mark.parametrize("name", sorted(TABLE_2))
def test_architecture_follows_table_2(name):
    row = TABLE_2[name]
    with torch.device("meta"):
        model = build_levit(name)
    d = row["D"]
    convs = [m.conv for m in model.patch_conv if hasattr(m, "conv")]
    c0 = row["C"][0]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, c0 // 8, (3, 3), (2, 2)), (c0 // 8, c0 // 4, (3, 3), (2, 2)),
        (c0 // 4, c0 // 2, (3, 3), (2, 2)), (c0 // 2, c0, (3, 3), (2, 2)),
    ]
    assert sum(isinstance(m, torch.nn.Hardswish) for m in model.patch_conv) == 3
    resolutions = []
    for stage, (c, n, depth) in enumerate(zip(row["C"], row["N"], row["depth"])):
        blocks = model.stages[stage].blocks
        assert len(blocks) == depth
        for block in blocks:
            attn = block.attn
            assert attn.num_heads == n and attn.key_dim == d and attn.value_dim == 2 * d
            assert attn.qkv.linear.in_features == c and attn.qkv.linear.out_features == n * 4 * d
            assert attn.proj.linear.out_features == c
            assert block.mlp.expand.linear.out_features == 2 * c  # expansion 2
            assert block.drop_path.p == row["p"]
        resolutions.append(blocks[0].attn.attention_bias.table.shape[-1])
        if stage:
            shrink = model.stages[stage].shrink.attn
            assert shrink.num_heads == row["shrink_N"][stage - 1] == row["C"][stage - 1] // d
            assert shrink.value_dim == 4 * d
            assert shrink.proj.linear.out_features == c
    assert resolutions == [14, 7, 4]
    assert model.head.linear.out_features == model.head_dist.linear.out_features == 1000


def test_patch_conv_maps_224_to_14x14():
    model = build_levit("levit_128s").eval()
    assert model.patch_conv(torch.randn(1, 3, 224, 224)).shape == (1, 128, 14, 14)


@pytest.mark.parametrize("q_res,k_res,stride", [(4, 4, 1), (4, 7, 2), (7, 14, 2)])
def test_attention_bias_is_indexed_by_absolute_offsets(q_res, k_res, stride):
    bias = AttentionBias(num_heads=3, q_res=q_res, k_res=k_res, stride=stride)
    with torch.no_grad():
        bias.table.copy_(torch.randn(bias.table.shape))
    full = bias()
    assert full.shape == (3, q_res * q_res, k_res * k_res)
    for qi in range(q_res * q_res):
        qy, qx = divmod(qi, q_res)
        for ki in range(k_res * k_res):
            ky, kx = divmod(ki, k_res)
            expected = bias.table[:, abs(qy * stride - ky), abs(qx * stride - kx)]
            assert torch.equal(full[:, qi, ki], expected)


def test_residual_branches_start_with_zero_bn_weight():
    model = build_levit("levit_128s")
    for name, module in model.named_modules():
        if name.endswith(("attn.proj", "mlp.reduce")) and ".shrink.attn" not in name:
            assert torch.all(module.bn.weight == 0), name
    shrink_proj = model.stages[1].shrink.attn.proj
    assert torch.all(shrink_proj.bn.weight == 1)  # no residual around the shrinking attention
    assert torch.all(model.stages[0].blocks[0].mlp.expand.bn.weight == 1)


def test_train_mode_returns_both_heads_eval_mode_their_mean():
    model = randomise(build_levit("levit_128s", num_classes=10))
    x = torch.randn(4, 3, 224, 224)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (4, 10)
    assert not torch.allclose(out[0], out[1])
    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        expected = (model.head(features) + model.head_dist(features)) / 2
    assert logits.shape == (4, 10)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_drop_path_is_random_in_training_and_off_in_eval():
    assert LEVIT_CONFIGS["levit_384"].drop_path == 0.1
    assert all(LEVIT_CONFIGS[n].drop_path == 0.0 for n in LEVIT_CONFIGS if n != "levit_384")
    model = randomise(build_levit("levit_128s", num_classes=10, drop_path=0.5))
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        model.train()
        for m in model.modules():  # BN in train mode uses batch statistics; fix them to compare
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        first, second = model(x)[0], model(x)[0]
        assert not torch.allclose(first, second)
        model.eval()
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("num_classes", [1, 10, 1000])
def test_num_classes_is_configurable(num_classes):
    model = build_levit("levit_128s", num_classes=num_classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, num_classes)


def test_num_classes_must_be_positive():
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        build_levit("levit_128s", num_classes=0)


def test_forward_equals_the_papers_equations():
    """Our modules and an independent functional forward agree on the same weights."""
    spec = get_spec("levit_128s")
    model = randomise(spec.build()).eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
    reference = official_logits(native_to_official(model.state_dict(), model.config), model.config, x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)

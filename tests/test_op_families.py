"""Op families beyond the zoo (SPEC "Beyond the zoo"): closed forms per op, and one representative
network per family whose MACs equal torch's flop counter on a plain forward and whose parameters all
land in rows."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perfsim.ir.graph import VECTOR_OPS_PER_ELEMENT, OpKind
from perfsim.frontends.lowering import lower
from perfsim.frontends.thirdparty import import_timm, import_torchvision


def vops(layer) -> int:
    return layer.vector_ops(fold_batchnorm=True, fuse_activation=True)


@pytest.mark.parametrize("module,kind", [
    (nn.ReLU(), OpKind.RELU), (nn.ReLU6(), OpKind.RELU6), (nn.Hardtanh(-1, 1), OpKind.CLAMP),
    (nn.Hardswish(), OpKind.HARDSWISH), (nn.Hardsigmoid(), OpKind.HARDSIGMOID), (nn.SiLU(), OpKind.SILU),
    (nn.Sigmoid(), OpKind.SIGMOID), (nn.GELU(), OpKind.GELU), (nn.GELU(approximate="tanh"), OpKind.GELU),
    (nn.LeakyReLU(), OpKind.LEAKY_RELU), (nn.ELU(), OpKind.ELU), (nn.Tanh(), OpKind.TANH), (nn.Mish(), OpKind.MISH),
])
def test_activations_cost_their_table_entry_per_element(module, kind):
    (layer,) = lower(nn.Sequential(module), (3, 4, 5)).layers
    assert layer.kind is kind
    assert vops(layer) == VECTOR_OPS_PER_ELEMENT[kind] * 60


def test_spec_vector_costs():
    """SPEC's numbers, written out once: a change to the table has to change this test too."""
    k = VECTOR_OPS_PER_ELEMENT
    assert (k[OpKind.SIGMOID], k[OpKind.SILU], k[OpKind.HARDSIGMOID], k[OpKind.HARDSWISH], k[OpKind.GELU]) == \
        (4, 5, 4, 5, 5)
    assert (k[OpKind.LEAKY_RELU], k[OpKind.ELU], k[OpKind.ELEMENTWISE], k[OpKind.UPSAMPLE_NEAREST]) == (2, 3, 1, 1)
    assert (k[OpKind.UPSAMPLE_BILINEAR], k[OpKind.PAD], k[OpKind.ROLL], k[OpKind.COPY], k[OpKind.SOFTMAX]) == \
        (7, 1, 1, 1, 5)
    assert k[OpKind.UPSAMPLE_BICUBIC] == 31  # perfsim's choice: 16 taps, 16 multiplies and 15 adds
    assert k[OpKind.LAYERNORM] + k[OpKind.BATCHNORM] == 7 and k[OpKind.GROUPNORM] == 5


def test_costed_activations_are_an_output_stage_that_always_counts():
    net = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
    (layer,) = lower(net, (3, 4, 4)).layers
    assert layer.ops == ("0", "1", "2")
    n = 8 * 16
    assert layer.vector_ops(True, True) == layer.vector_ops(True, False) == 5 * n
    assert layer.vector_ops(False, True) == 5 * n + 2 * n


def test_layer_norm_channels_last_functional_and_group_norm():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(8)
            self.gn = nn.GroupNorm(2, 8)

        def forward(self, x):
            x = self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # ConvNeXt's channels-last form
            x = F.layer_norm(x, x.shape[1:])  # functional, no affine
            return self.gn(x)

    ln, fln, gn = lower(M(), (8, 3, 5)).layers
    n = 8 * 15
    assert (ln.op, vops(ln), ln.params, ln.weight_bytes(8, 32, True)) == ("layernorm", 7 * n, 16, 16 * 4)
    assert (fln.op, vops(fln), fln.params) == ("layernorm", 5 * n, 0)
    assert (gn.op, vops(gn), gn.params) == ("groupnorm", 7 * n, 16)


def test_squeeze_excitation():
    tv = import_torchvision()
    se = tv.ops.SqueezeExcitation(8, 2)  # pool, FC (1x1 conv), ReLU, FC, sigmoid gate, broadcast multiply
    pool, fc1, fc2, mul = lower(se, (8, 6, 6)).layers
    assert (pool.op, fc1.op, fc2.op, mul.op) == ("global_avgpool", "conv_pw", "conv_pw", "elementwise")
    assert fc1.ops == ("fc1", "activation") and fc2.ops == ("fc2", "scale_activation")
    assert vops(fc1) == 0 and vops(fc2) == 4 * 8  # the gate costs sigmoid's 4 per element
    assert vops(mul) == 8 * 36 and set(mul.inputs) == {0, fc2.output}


@pytest.mark.parametrize("fn,macs", [
    (lambda a, b: a @ b.transpose(-1, -2), 2 * 6 * 6 * 5),
    (lambda a, b: torch.bmm(a, b.transpose(1, 2)), 2 * 6 * 6 * 5),
    (lambda a, b: torch.einsum("bik,bjk->bij", a, b), 2 * 6 * 6 * 5),
    (lambda a, b: torch.baddbmm(a @ b.transpose(1, 2), a, b.transpose(1, 2)), 2 * 2 * 6 * 6 * 5),
    (lambda a, b: F.linear(a, b[0]), 2 * 6 * 6 * 5),
])
def test_products_of_activations_are_matmuls(fn, macs):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            x = self.p(x)[:, 0]  # (1, 2, 6, 5) -> (2, 6, 5)
            return fn(x.reshape(2, 6, 5), torch.relu(x.reshape(2, 6, 5)))

    g = lower(M(), (1, 2 * 6, 5))
    products = [layer for layer in g.layers if layer.op == "matmul"]
    assert sum(layer.macs for layer in products) == macs
    assert all(layer.weight_elems == 0 and len(layer.inputs) >= 2 for layer in products)  # both operands read


def test_scaled_dot_product_attention_lowers_to_its_parts():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x):
            x = x.flatten(2).transpose(1, 2)  # (1, 10, 8)
            q, k, v = self.qkv(x).reshape(1, 10, 3, 2, 4).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v)

    g = lower(M(), (8, 2, 5))
    ops = [layer.op for layer in g.layers]
    assert ops.count("matmul") == 2 and ops.count("softmax") == 1 and ops[0] == "linear"
    assert g.macs == 10 * 8 * 24 + 2 * (2 * 10 * 10 * 4)
    scores = next(layer for layer in g.layers if layer.op == "softmax")
    assert scores.out_shape == (1, 2, 10, 10) and vops(scores) == 5 * 200


def test_pad_absorbed_by_a_conv_or_a_row_of_its_own():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3)
            self.b = nn.Conv2d(3, 3, 3, stride=2)

        def forward(self, x):
            x = self.a(F.pad(x, (1, 1, 1, 1)))  # exactly the conv's padding: absorbed
            x = F.pad(x, (0, 0, 0, 0))  # nothing to pad: an alias
            return self.b(F.pad(x, (0, 1, 0, 1)))  # TF "same" padding: asymmetric, a vector row

    a, pad, b = lower(M(), (3, 6, 6)).layers
    assert (a.op, a.padding, a.in_shape) == ("conv", (1, 1), (1, 3, 6, 6))
    assert (pad.op, vops(pad)) == ("pad", 3 * 7 * 7)
    assert b.inputs == (pad.output,)


def test_interpolate_roll_and_copies():
    class M(nn.Module):
        def forward(self, x):
            a = F.interpolate(x, scale_factor=2, mode="nearest")
            b = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            c = torch.roll(x, shifts=(1, 1), dims=(2, 3))
            d = x[:, :1].expand(1, 3, 4, 4).contiguous()  # a broadcast made real
            return a, b, c, d

    a, b, c, d = lower(M(), (3, 4, 4)).layers
    assert (a.op, vops(a)) == ("upsample_nearest", 3 * 64)
    assert (b.op, vops(b)) == ("upsample_bilinear", 7 * 3 * 64)
    assert (c.op, vops(c)) == ("roll", 48)
    assert (d.op, vops(d)) == ("copy", 48)


def test_a_product_of_constants_is_a_row_the_flop_counter_also_counts():
    """Swin-V2's position-bias MLP on a fixed coordinate table: other arithmetic on parameters and
    constants folds at compile time, but a matrix product is counted by torch's flop counter, so it runs."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("coords", torch.randn(9, 2))
            self.mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            bias = torch.sigmoid(self.mlp(self.coords)).view(1, 1, 3, 3)
            return self.conv(x) + bias

    g = lower(M(), (3, 3, 3))
    fc1, fc2, conv, add = g.layers
    assert (fc1.name, fc1.inputs, fc1.macs, fc1.params) == ("mlp.0", (), 9 * 2 * 8, 24)
    assert fc1.ops == ("mlp.0", "mlp.1") and fc2.ops == ("mlp.2", "sigmoid") and fc2.macs == 9 * 8
    assert set(add.inputs) == {conv.output, fc2.output}


def test_fold_and_bicubic_upsampling():
    class M(nn.Module):
        def forward(self, x):
            patches = F.unfold(x, 2, stride=2)  # (1, 3·4, 4): a materialised copy
            return F.fold(patches, (4, 4), 2, stride=2), F.interpolate(x, scale_factor=2, mode="bicubic")

    unfold, fold, bicubic = lower(M(), (3, 4, 4)).layers
    assert (unfold.op, vops(unfold)) == ("copy", 48)
    assert (fold.op, vops(fold)) == ("reduce", 48)  # one add per patch element
    assert (bicubic.op, vops(bicubic)) == ("upsample_bicubic", 31 * 3 * 64)


def test_pools():
    class M(nn.Module):
        def forward(self, x):
            a = F.max_pool2d(x, 3, 2, 1)
            b = F.avg_pool2d(a, 2)
            c = F.adaptive_max_pool2d(b, 1)
            return c, F.adaptive_avg_pool2d(b, 1), b.mean(1)

    mx, avg, gmax, gap, red = lower(M(), (4, 8, 8)).layers
    assert (mx.op, vops(mx)) == ("maxpool", 8 * 4 * 16)
    assert (avg.op, vops(avg)) == ("avgpool", 4 * 4 * 4)
    assert (gmax.op, vops(gmax), gmax.kernel) == ("maxpool", 3 * 4, (2, 2))
    assert (gap.op, vops(gap)) == ("global_avgpool", 16)
    assert (red.op, vops(red)) == ("reduce", 16)


# --------------------------------------------------------------------------- representatives


def _flop_counter_macs(model, shape) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(torch.randn((1,) + shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return fc.get_total_flops() // 2


def _tiny_vit():
    tv = import_torchvision()
    return tv.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                       mlp_dim=64, num_classes=10)


def _tv(name):
    return lambda: import_torchvision().models.get_model(name, weights=None)


def _timm(name):
    return lambda: import_timm().create_model(name, pretrained=False)


REPRESENTATIVES = {
    "mobilenet_v3_large": (_tv("mobilenet_v3_large"), (3, 96, 96)),  # hardswish, SE with hardsigmoid
    "efficientnet_b0": (_tv("efficientnet_b0"), (3, 64, 64)),  # SiLU, SE with sigmoid, stochastic depth
    "regnet_y_400mf": (_tv("regnet_y_400mf"), (3, 64, 64)),  # grouped convs, SE
    "convnext_tiny": (_tv("convnext_tiny"), (3, 64, 64)),  # channels-last LayerNorm, GELU, layer scale
    "vit_tiny": (_tiny_vit, (3, 32, 32)),  # class token, position embedding, MultiheadAttention
    "swin_t": (_tv("swin_t"), (3, 64, 64)),  # window attention, roll, relative position bias, pad
    "mobilevit_xxs": (_timm("mobilevit_xxs"), (3, 64, 64)),  # conv-attention hybrid, unfold/fold by reshape
}


@pytest.mark.parametrize("name", list(REPRESENTATIVES))
def test_representatives_match_the_flop_counter_and_keep_every_parameter(name):
    build, shape = REPRESENTATIVES[name]
    torch.manual_seed(0)
    model = build().eval()
    g = lower(model, shape)
    assert g.macs == _flop_counter_macs(model, shape) > 0
    assert sum(layer.params for layer in g.layers) == sum(p.numel() for p in model.parameters()) == g.params
    assert len({layer.name for layer in g.layers}) == len(g.layers)


def test_vit_b_16_matches_torchvisions_published_count():
    tv = import_torchvision()
    g = lower(tv.models.vit_b_16(), (3, 224, 224))
    assert round(g.macs / 1e9, 3) == tv.models.ViT_B_16_Weights.DEFAULT.meta["_ops"] == 17.564
    assert [layer.op for layer in g.layers[:3]] == ["conv", "copy", "elementwise"]  # class token, position embedding

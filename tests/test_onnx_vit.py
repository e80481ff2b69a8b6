"""Vision transformers of timm (ViT-Tiny, DeiT-Tiny; random weights, exported by
``torch.onnx.export``) import into regnet and predict what onnxruntime predicts; the pieces they
need: ``ClassToken`` (learned tokens prepended to a sequence) and timm's attention block as one
``MultiHeadAttention``.

The quick tests build the models at a smaller size through timm's keyword arguments (32 x 32
images in 8 x 8 patches, 2 blocks: 17 tokens of width 192); the tests marked ``slow`` import the
real configurations (224 x 224 images in 16 x 16 patches, 12 blocks).
"""

import sys
import types

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the model tests need torch==2.13.0 (the 'test-models' extra)")
# torchvision (which timm imports) is a CUDA build: an empty module stands in for its compiled
# operators' registrations (see tests/test_torchvision_import.py)
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
timm = pytest.importorskip("timm", reason="these tests need the 'test-models' extra (timm)")

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet.onnx import OnnxImportError, vit_import  # noqa: E402
from tests.test_torchvision_import import export  # noqa: E402  (the same export of an image model)
from tests.torch_agreement import layer_agrees  # noqa: E402

#: the largest difference from onnxruntime, relative to the largest absolute output
TOLERANCE = 1e-4
#: the quick configuration: timm keyword arguments and the image size
SMALL = {"img_size": 32, "patch_size": 8, "depth": 2}


def randomize(net, scale=0.1):
    """Random values in every parameter (a fresh timm ViT has zero biases, a near-zero class
    token and unit norms, which would leave much of the import untested): kernels and tokens
    ``N(0, scale^2)``, norm weights in [0.5, 1.5)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 3 else scale))
    return net.eval()


def build(name, *, small=True, random=True, fused=True):
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, **(SMALL if small else {}))
    for module in net.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused  # False: timm's own q * scale @ k^T, softmax, @ v
    return randomize(net) if random else net.eval()


def check_import(net, size, *, batch=2):
    proto = export(net, size)
    model = ronnx.from_proto(proto)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    got = model.predict(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.std(expected) > 1e-3 * np.max(np.abs(expected))  # the outputs differ: a telling comparison
    with torch.no_grad():
        assert np.allclose(net(torch.from_numpy(x)).numpy(), expected, atol=1e-4 * np.max(np.abs(expected)))
    error = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
    print(f"{len(model.layers)} layers, max relative error {error:.2g}")
    assert error <= TOLERANCE
    return model


def types_of(model):
    return [type(layer).__name__ for layer in model.layers]


# -- the models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_small_vision_transformers_import(name):
    model = check_import(build(name), SMALL["img_size"])
    kinds = types_of(model)
    assert kinds.count("MultiHeadAttention") == SMALL["depth"]
    assert kinds[:5] == ["Conv2D", "Reshape", "Permute", "ClassToken", "PositionEmbedding"]
    attention = next(layer for layer in model.layers if type(layer).__name__ == "MultiHeadAttention")
    assert (attention.num_heads, attention.key_dim) == (3, 64)


def test_distilled_deit_imports_with_two_learned_tokens():
    """DeiT's distilled variant: class and distillation tokens (one ClassToken of two), two heads
    on tokens 0 and 1 averaged."""
    model = check_import(build("deit_tiny_distilled_patch16_224"), SMALL["img_size"])
    (tokens,) = [layer for layer in model.layers if type(layer).__name__ == "ClassToken"]
    assert tokens.num_tokens == 2 and tokens.output_shape == (2 + 16, 192)


def test_timm_unfused_attention_and_fresh_weights_import():
    """timm's own attention (``q * scale @ k.transpose(-2, -1)``, not scaled_dot_product_attention)
    and a freshly initialised model (whose equal zero biases PyTorch shares through Identity)."""
    check_import(build("vit_tiny_patch16_224", fused=False), SMALL["img_size"])
    check_import(build("deit_tiny_patch16_224", random=False), SMALL["img_size"])


def test_imported_vit_fine_tunes_and_saves(tmp_path):
    model = check_import(build("vit_tiny_patch16_224"), SMALL["img_size"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = np.eye(1000, dtype=np.float32)[rng.integers(0, 1000, 4)]
    model.compile({"type": "categorical_crossentropy", "from_logits": True}, {"type": "adam", "learning_rate": 1e-3})
    before = model.evaluate(x, y, batch_size=4)["loss"]
    model.fit(x, y, epochs=3, batch_size=4, verbose=0, seed=0)
    after = model.evaluate(x, y, batch_size=4)["loss"]
    assert np.isfinite(after) and after < before, (before, after)
    regnet.save(model, tmp_path / "tuned.h5")
    again = regnet.load(tmp_path / "tuned.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_small_mlp_mixer_imports():
    """timm's MLP-Mixer at mixer_s16_224's width (512; token MLP 256, channel MLP 2048) with 2
    blocks on 32 x 32 images in 8 x 8 patches: the token mixing is a Dense between two Permutes."""
    from timm.models.mlp_mixer import MlpMixer

    torch.manual_seed(0)
    net = randomize(MlpMixer(img_size=32, patch_size=8, num_blocks=2, embed_dim=512))
    model = check_import(net, 32)
    assert types_of(model).count("Permute") == 1 + 2 * 2


class IndexedAttention(torch.nn.Module):
    """Attention as older timm wrote it: ``q, k, v = qkv[0], qkv[1], qkv[2]`` (Gather, not Split)
    and the scale on the scores (``* scale``, or ``/ divisor``); an output width other than the
    input's, no biases in qkv (nor in the projection when dividing)."""

    def __init__(self, dim=12, heads=3, out=5, divide=False):
        super().__init__()
        self.heads, self.divide = heads, divide
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.proj = torch.nn.Linear(dim, out, bias=not divide)
        self.scale = 0.7  # not 1/sqrt(d): folded into the query kernel

    def forward(self, x):
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1)
        scores = scores / (1 / self.scale) if self.divide else scores * self.scale
        x = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, dim)
        return self.proj(x)


@pytest.mark.parametrize("divide", [False, True])
def test_attention_with_indexed_heads_and_scaled_scores_imports(divide):
    from tests.torch_agreement import torch_onnx_bytes

    torch.manual_seed(0)
    net = IndexedAttention(divide=divide).eval()
    x = np.random.default_rng(0).standard_normal((2, 4, 12)).astype(np.float32)
    model = ronnx.from_proto(onnx.load_from_string(torch_onnx_bytes(net, x[:1])))
    assert types_of(model) == ["MultiHeadAttention"]
    assert model.layers[0].use_bias is not divide and model.layers[0].output_dim == 5
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_real_vision_transformers_import(name):
    model = check_import(build(name, small=False), 224, batch=1)
    assert types_of(model).count("MultiHeadAttention") == 12


@pytest.mark.slow
def test_real_mlp_mixer_imports():
    check_import(build("mixer_s16_224", small=False), 224, batch=1)


# -- ClassToken ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
def test_class_token_agrees_with_torch_expand_and_cat(k):
    layer_agrees(
        {"type": "ClassToken", "num_tokens": k, "tokens_initializer": "glorot_uniform"},
        (5, 4),
        lambda x, w: torch.cat([w["tokens"][None].expand(x.shape[0], -1, -1), x], dim=1),
    )


def test_class_token_refuses_a_flat_input():
    with pytest.raises(regnet.ConfigError, match="ClassToken expects a rank-3 input"):
        regnet.Model.from_spec({"input_shape": [6], "layers": [{"type": "ClassToken"}]})


def test_regnet_vit_head_round_trips_through_onnx():
    """ClassToken + PositionEmbedding + MultiHeadAttention as regnet writes them import back."""
    spec = {
        "input_shape": [4, 6],
        "layers": [
            {"type": "ClassToken", "num_tokens": 2, "tokens_initializer": "glorot_uniform"},
            {"type": "PositionEmbedding", "sequence_length": 6},
            {"type": "Dense", "units": 6},
        ],
    }
    model = regnet.Model.from_spec(spec, seed=0)
    back = ronnx.from_proto(ronnx.to_proto(model))
    assert types_of(back) == ["ClassToken", "PositionEmbedding", "Dense"]
    assert back.layers[0].num_tokens == 2
    x = np.random.default_rng(1).standard_normal((3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(back.predict(x), model.predict(x), atol=1e-6)


# -- what the import refuses, and why -----------------------------------------------------------------
class AppendedToken(torch.nn.Module):
    """A token expanded to the batch and appended after the sequence (ClassToken prepends)."""

    def __init__(self):
        super().__init__()
        self.token = torch.nn.Parameter(torch.randn(1, 1, 4))

    def forward(self, x):
        return torch.cat([x, self.token.expand(x.shape[0], -1, -1)], dim=1)


def test_an_expanded_constant_after_the_sequence_is_refused_by_name():
    from tests.torch_agreement import torch_onnx_bytes

    data = torch_onnx_bytes(AppendedToken().eval(), np.zeros((1, 3, 4), np.float32))
    with pytest.raises(OnnxImportError, match=r"Concat.*supported only as tokens before one \(N, L, D\) sequence"):
        ronnx.from_proto(onnx.load_from_string(data))


def test_a_file_may_not_use_the_private_attention_operator():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 6])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 6])
    node = onnx.helper.make_node(vit_import.ATTENTION_OP, ["x"], ["y"], domain=vit_import.DOMAIN)
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid(vit_import.DOMAIN, 1)]
    )
    with pytest.raises(OnnxImportError, match="domain 'regnet' are unsupported"):
        ronnx.from_proto(proto)

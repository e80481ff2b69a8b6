"""Tiny HuggingFace transformers (random weights from a config, nothing downloaded) exported by
``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``, opset 17) with the inputs
``input_ids`` and ``attention_mask`` (int64, dynamic batch, a fixed sequence length of 8) import
into regnet through the generic tensor layers (MatMul, Gather, Where, Cast, ...) and predict what
onnxruntime predicts on a batch whose attention mask pads two of its rows.

GPT-2 (``GPT2Model``, causal) is exported with transformers' older mask builder patched in (see
``traceable_masks``); its graph merges the batch into the positions around each ``Gemm``, splits
the query, key and value along the features, And-s a constant causal mask with the padding mask,
and (sdpa) guards the softmax with ``IsNaN``.

Each model is checked with transformers' default attention (``attn_implementation="sdpa"``) and
with ``"eager"``: both export plain operators (``MatMul``, ``Softmax``), and they write the mask
differently (BERT eager: the additive ``(1 - mask) * min`` through ``Cast``, ``Sub``, ``Mul``;
DistilBERT eager: ``masked_fill`` as ``Equal(mask, 0)``, ``Expand``, ``Where``; sdpa: a boolean
mask made additive by ``Where``), so the two cover both mask readings.

The models come from the 'test-models' extra (transformers 4.57.6). As in
tests/test_torchvision_import.py, torchvision's compiled operators (which transformers imports
through its image utilities and which do not load on a CPU-only machine) are replaced by an empty
``torchvision._meta_registrations`` before the import; the models need none of them.
"""

import contextlib
import io
import sys
import types
import warnings
from unittest import mock

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the model tests need torch==2.13.0 (the 'test-models' extra)")
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
transformers = pytest.importorskip("transformers", reason="these tests need the 'test-models' extra (transformers)")

import regnet.onnx as ronnx  # noqa: E402

#: the largest difference from onnxruntime, relative to the largest absolute output
TOLERANCE = 1e-4
#: the fixed sequence length of the exported graphs (the batch is dynamic)
LENGTH = 8
VOCAB = 100


class LastTensor(torch.nn.Module):
    """The model called with keyword inputs, returning one tensor (regnet models have one output)."""

    def __init__(self, model, output, **extra):
        super().__init__()
        self.model, self.output, self.extra = model, output, extra

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **self.extra)
        return getattr(out, self.output)


def bert(attention):
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
        attn_implementation=attention,
    )
    # the classifier reads the pooled first token: hidden_states[:, 0] (a Gather), Dense, tanh
    return LastTensor(transformers.BertForSequenceClassification(config), "logits")


def distilbert(attention):
    config = transformers.DistilBertConfig(
        vocab_size=VOCAB,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=32,
        attn_implementation=attention,
    )
    return LastTensor(transformers.DistilBertModel(config), "last_hidden_state")


def gpt2(attention):
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=2, attn_implementation=attention
    )
    return LastTensor(transformers.GPT2Model(config), "last_hidden_state", use_cache=False)


MODELS = {"bert": bert, "distilbert": distilbert, "gpt2": gpt2}


@contextlib.contextmanager
def traceable_masks():
    """transformers' mask builder for torch < 2.6 while exporting: the newer one vmaps over the
    batch (``torch.vmap``), which the TorchScript exporter cannot trace; the older one writes the
    causal mask as ``Range``, ``LessOrEqual`` and ``And`` with the padding mask. Only GPT-2 (a
    causal model) builds its mask through it."""
    masking = transformers.masking_utils
    older = masking.sdpa_mask_older_torch
    with (
        mock.patch.object(masking, "sdpa_mask", older),
        mock.patch.dict(masking.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, {"sdpa": older}),
    ):
        yield


def export(net):
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, LENGTH))
    mask = torch.ones(2, LENGTH, dtype=torch.int64)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), traceable_masks():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (ids, mask),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=["y"],
            dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"}, "y": {0: "N"}},
        )
    return buffer.getvalue()


def batch(n=4, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int64)
    mask = np.ones((n, LENGTH), np.int64)
    mask[1, 5:] = 0  # padding at the end of two rows
    mask[2, 1:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(MODELS))
def test_huggingface_model_imports_and_predicts_as_onnxruntime(name, attention):
    torch.manual_seed(0)
    net = MODELS[name](attention).eval()
    data = export(net)
    model = ronnx.from_proto(onnx.load_from_string(data))
    assert model.input_names == ["input_ids", "attention_mask"]
    assert [i.dtype for i in model.inputs] == ["int64", "int64"]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs = batch()
    want = session.run(None, inputs)[0]
    got = model.predict(inputs)
    assert got.shape == want.shape
    error = float(np.abs(got - want).max() / np.abs(want).max())
    assert error < TOLERANCE, f"{name} ({attention}): max relative error {error:.2e}"
    with torch.no_grad():  # and the padding really changes the padded rows (the mask is read)
        ones = net(torch.tensor(inputs["input_ids"]), torch.ones(4, LENGTH, dtype=torch.int64)).numpy()
    assert np.abs(ones[1:3] - want[1:3]).max() / np.abs(want).max() > 10 * TOLERANCE
    np.testing.assert_allclose(got[[0, 3]], ones[[0, 3]], atol=TOLERANCE * np.abs(want).max())

"""PyTorch twins of built regnet models (same graph, same weights) and their ONNX export.

A chain of layers becomes an ``nn.Sequential`` (so ``twin[i]`` is the i-th module); a graph
(layers with ``inputs``) becomes a ``GraphTwin`` that evaluates the nodes in regnet's order. The
output softmax is left out: the twins return logits, which ``CrossEntropyLoss`` takes.
"""

import numpy as np


def _spec():
    from regnet import spec

    return spec


def _module(layer):
    """The PyTorch module of one regnet layer (activation excluded)."""
    import torch
    from torch import nn

    kind = type(layer).__name__
    p = {k: torch.from_numpy(v.copy()) for k, v in layer.params.items()}
    if kind == "Dense":
        m = nn.Linear(*p["kernel"].shape, bias=layer.use_bias)
        m.weight.data.copy_(p["kernel"].T)
        if layer.use_bias:
            m.bias.data.copy_(p["bias"])
    elif kind == "Conv2D":
        top, bottom, left, right = layer._pads
        if top != bottom or left != right:
            raise ValueError(f"{layer.name}: asymmetric padding {layer._pads} has no PyTorch twin")
        m = nn.Conv2d(
            p["kernel"].shape[1], layer.filters, layer.kernel_size, layer.strides, (top, left), bias=layer.use_bias
        )
        m.weight.data.copy_(p["kernel"])
        if layer.use_bias:
            m.bias.data.copy_(p["bias"])
    elif kind == "BatchNorm":
        if not (layer.scale and layer.center):
            raise ValueError(f"{layer.name}: BatchNorm without scale or center has no PyTorch twin")
        bn = nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d
        m = bn(layer.input_shape[0], eps=layer.epsilon, momentum=1 - layer.momentum)
        m.weight.data.copy_(p["gamma"])
        m.bias.data.copy_(p["beta"])
        m.running_mean.copy_(torch.from_numpy(layer.buffers["moving_mean"].copy()))
        m.running_var.copy_(torch.from_numpy(layer.buffers["moving_variance"].copy()))
    elif kind == "MaxPool2D":
        m = nn.MaxPool2d(layer.pool_size, layer.stride)
    elif kind == "GlobalAveragePooling2D":
        m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Identity() if layer.keepdims else nn.Flatten())
    elif kind == "Flatten":
        m = nn.Flatten()
    elif kind == "Dropout":
        m = nn.Dropout(layer.rate)
    elif kind == "Add":
        m = _Sum()
    elif kind == "DepthwiseConv2D":
        top, bottom, left, right = layer._pads
        if top != bottom or left != right:
            raise ValueError(f"{layer.name}: asymmetric padding {layer._pads} has no PyTorch twin")
        channels = layer.input_shape[0]
        m = nn.Conv2d(
            channels,
            p["kernel"].shape[0],
            layer.kernel_size,
            layer.strides,
            (top, left),
            layer.dilation_rate,
            groups=channels,
            bias=layer.use_bias,
        )
        m.weight.data.copy_(p["kernel"])
        if layer.use_bias:
            m.bias.data.copy_(p["bias"])
    elif kind == "LSTM":
        m = _lstm(layer, p)
    elif kind == "MultiHeadAttention":
        m = _attention(layer, p)
    elif kind == "LayerNormalization":
        axes = tuple(layer.axis) if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
        if axes not in ((-1,), (len(layer.input_shape),)) or not (layer.scale and layer.center):
            raise ValueError(f"{layer.name}: only a LayerNormalization of the last axis with gamma and beta has a twin")
        m = nn.LayerNorm(layer.input_shape[-1], eps=layer.epsilon)
        m.weight.data.copy_(p["gamma"])
        m.bias.data.copy_(p["beta"])
    elif kind == "PositionEmbedding":
        m = _Positions(p["embeddings"])
    elif kind == "Reshape":
        m = _Reshape(tuple(layer.output_shape))
    elif kind == "Permute":
        m = _Permute(tuple(layer.dims))
    elif kind == "GlobalAveragePooling1D":
        m = _Mean(layer.axis, layer.keepdims)
    else:
        raise ValueError(f"no PyTorch translation for {kind}")
    return m, None if kind == "LSTM" else _activation(layer)  # an LSTM's activation acts inside its cell


def _activation(layer):
    """The module of a layer's activation (``None`` for linear, and for softmax: the loss's)."""
    from torch import nn

    act = getattr(layer, "activation", "linear")
    if act is None:
        return None
    kind = act if isinstance(act, str) else act.get("type")
    approximate = False if isinstance(act, str) else bool(act.get("approximate", False))
    if kind == "relu":
        return nn.ReLU()
    if kind == "gelu":
        return nn.GELU("tanh" if approximate else "none")
    if kind not in ("linear", "softmax"):
        raise ValueError(f"no PyTorch translation for activation {act!r}")
    return None


def _lstm(layer, p):
    """``nn.LSTM`` with regnet's weights (the same gate order); returns the last hidden state, or
    every step's with ``return_sequences``."""
    import torch
    from torch import nn

    plain = layer.activation == "tanh" and layer.recurrent_activation == "sigmoid"
    if not plain or layer.go_backwards or layer.use_mask:
        raise ValueError(f"{layer.name}: only a plain LSTM (tanh, sigmoid gates, forwards, unmasked) has a twin")

    class LastState(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(p["kernel"].shape[0], layer.units, batch_first=True, bias=layer.use_bias)
            with torch.no_grad():
                self.lstm.weight_ih_l0.copy_(p["kernel"].T)
                self.lstm.weight_hh_l0.copy_(p["recurrent_kernel"].T)
                if layer.use_bias:
                    self.lstm.bias_ih_l0.copy_(p["bias"])
                    self.lstm.bias_hh_l0.zero_()

        def forward(self, x):
            y, _ = self.lstm(x)
            return y if layer.return_sequences else y[:, -1]

    return LastState()


def _attention(layer, p):
    """``nn.MultiheadAttention`` (batch first) with regnet's projections: query, key and value
    kernels ``(D, heads, key_dim)`` become the rows of ``in_proj_weight``, the output kernel
    ``(heads, key_dim, D)`` ``out_proj``. PyTorch's layer needs ``heads * key_dim`` equal to the
    model width, the value width equal to the key width and no masks."""
    import torch
    from torch import nn

    d = layer.input_shape[0][-1]
    heads, key_dim = layer.num_heads, layer.key_dim
    embed = heads * key_dim
    out = p["output_kernel"].shape[-1]
    shapes = [tuple(s) for s in layer.input_shape]
    if embed != d or out != d or p["value_kernel"].shape[-1] != key_dim or len(set(shapes)) != 1:
        raise ValueError(f"{layer.name}: this attention's shapes have no nn.MultiheadAttention twin")
    if layer.use_causal_mask or layer.use_attention_mask or not layer.use_bias:
        raise ValueError(f"{layer.name}: masked or bias-free attention has no twin here")

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(d, heads, dropout=layer.dropout, batch_first=True)
            rows = [p[f"{name}_kernel"].reshape(d, embed).T for name in ("query", "key", "value")]
            with torch.no_grad():
                self.mha.in_proj_weight.copy_(torch.cat(rows))
                self.mha.in_proj_bias.copy_(
                    torch.cat([p[f"{n}_bias"].reshape(embed) for n in ("query", "key", "value")])
                )
                self.mha.out_proj.weight.copy_(p["output_kernel"].reshape(embed, out).T)
                self.mha.out_proj.bias.copy_(p["output_bias"])

        def forward(self, query, value, key=None):
            key = value if key is None else key
            return self.mha(query, key, value, need_weights=False)[0]

    return SelfAttention()


def _Positions(table):
    from torch import nn

    class Positions(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Parameter(table.clone())

        def forward(self, x):
            return x + self.embeddings[: x.shape[1]]

    return Positions()


def _Reshape(shape):
    from torch import nn

    class Reshape(nn.Module):
        def forward(self, x):
            return x.reshape(-1, *shape)

    return Reshape()


def _Permute(dims):
    from torch import nn

    class Permute(nn.Module):
        def forward(self, x):
            return x.permute(0, *dims)

    return Permute()


def _Mean(axis, keepdims):
    from torch import nn

    class Mean(nn.Module):
        def forward(self, x):
            return x.mean(dim=axis, keepdim=keepdims)

    return Mean()


def _Sum():
    from torch import nn

    class Sum(nn.Module):
        def forward(self, *xs):
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out

    return Sum()


def is_chain(rmodel):
    spec = _spec()
    order = sorted(rmodel.nodes, key=lambda n: n.index)
    prev = spec.INPUT
    for node in order:
        if list(node.inputs) != [prev]:
            return False
        prev = node.name
    return True


def torch_model(rmodel):
    """The PyTorch twin of a built regnet model, with the same weights (softmax left to the loss)."""
    from torch import nn

    if is_chain(rmodel):
        mods = []
        for layer in rmodel.layers:
            m, act = _module(layer)
            mods += [m] if act is None else [m, act]
        return nn.Sequential(*mods)
    return _graph_twin(rmodel)


def _graph_twin(rmodel):
    from torch import nn

    spec = _spec()

    class GraphTwin(nn.Module):
        """Evaluates regnet's nodes in order; each node is a module and an optional ReLU."""

        def __init__(self):
            super().__init__()
            self.order = []
            self.layers = nn.ModuleDict()
            self.acts = nn.ModuleDict()
            for node in rmodel.nodes:
                m, act = _module(node.layer)
                key = node.name.replace(".", "_")
                self.layers[key] = m
                if act is not None:
                    self.acts[key] = act
                self.order.append((key, [s if s == spec.INPUT else s.replace(".", "_") for s in node.inputs]))

        def forward(self, x):
            values = {spec.INPUT: x}
            for key, inputs in self.order:
                out = self.layers[key](*[values[s] for s in inputs])
                if key in self.acts:
                    out = self.acts[key](out)
                values[key] = out
            return values[self.order[-1][0]]

    return GraphTwin()


def export_onnx(twin, input_shape, path, opset=17):
    """Write the twin (in eval mode) as an ONNX file with a dynamic batch axis; returns ``path``."""
    import torch

    twin.eval()
    dummy = torch.from_numpy(np.zeros((2, *input_shape), np.float32))
    torch.onnx.export(
        twin,
        (dummy,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return path

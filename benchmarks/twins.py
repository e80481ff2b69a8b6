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
    else:
        raise ValueError(f"no PyTorch translation for {kind}")
    act = getattr(layer, "activation", "linear")
    if act == "relu":
        return m, nn.ReLU()
    if act not in ("linear", "softmax"):
        raise ValueError(f"no PyTorch translation for activation {act!r}")
    return m, None


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

"""Agreement with PyTorch: a component's forward pass and its gradients against PyTorch's
equivalent, on the same random inputs and weights (float32 tolerances).

Each test module calls ``pytest.importorskip("torch")`` first, then one of:

* ``layer_agrees(config, input_shape, torch_fn)``: ``torch_fn(x, w)`` computes the layer in
  PyTorch from the input tensor(s) ``x`` and the layer's weights ``w`` (a dict of tensors by the
  layer's own weight names, buffers included); forward, input gradient(s) and every parameter
  gradient must agree;
* ``activation_agrees(config, torch_fn)``;
* ``loss_agrees(config, torch_fn, pred, target)``: the mean loss and its gradient;
* ``optimizer_agrees(config, torch_optimizer)``: 20 steps of both on the same parameters and
  gradients, the regnet optimizer rebuilt from its ``state_dict`` half-way (resume).
"""

import numpy as np

from regnet import activations, layers, losses, optimizers

RTOL, ATOL = 1e-4, 1e-5


def _torch():
    import torch

    return torch


def _close(name, got, want, rtol, atol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != torch's {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=name)


def layer_agrees(config, input_shape, torch_fn, *, batch=3, seed=0, training=False, rtol=RTOL, atol=ATOL, x=None):
    """Build ``config`` for ``input_shape`` (no batch axis; a list of shapes for merge layers),
    run it and ``torch_fn`` on the same inputs and weights, compare outputs and gradients."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    layer = layers.create(dict(config))
    layer.setup(input_shape, rng)
    merge = layer.n_inputs is None
    shapes = input_shape if merge else [input_shape]
    xs = x if x is not None else [rng.standard_normal((batch, *s)).astype(np.float32) for s in shapes]
    if not isinstance(xs, list):
        xs = [xs]
    y = layer([a.copy() for a in xs] if merge else xs[0].copy(), training)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.call_backward(g.copy())
    dxs = dx if merge else [dx]

    tx = [torch.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in xs]
    tw = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    tw.update({k: torch.tensor(v) for k, v in layer.buffers.items()})
    ty = torch_fn(tx if merge else tx[0], tw)
    _close("forward", y, ty.detach().numpy(), rtol, atol)
    (ty * torch.tensor(g)).sum().backward()
    for i, (a, b) in enumerate(zip(dxs, tx)):
        if b.requires_grad:
            _close(f"input gradient {i}", a, b.grad.numpy(), rtol, atol)
    for k in layer.params:
        assert tw[k].grad is not None, f"torch_fn does not use weight {k!r}"
        _close(f"gradient of {k}", layer.grads[k], tw[k].grad.numpy(), rtol, atol)
    return layer


def activation_agrees(config, torch_fn, *, shape=(4, 7), seed=0, scale=3.0, rtol=RTOL, atol=ATOL):
    torch = _torch()
    rng = np.random.default_rng(seed)
    act = activations.get(config)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    y = act.forward(x.copy())
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = act.backward(g.copy(), x.copy(), y.copy())
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(tx)
    _close("forward", y, ty.detach().numpy(), rtol, atol)
    (ty * torch.tensor(g)).sum().backward()
    _close("input gradient", dx, tx.grad.numpy(), rtol, atol)


def loss_agrees(config, torch_fn, pred, target, *, rtol=RTOL, atol=ATOL):
    """``torch_fn(pred, target)`` returns the batch mean, as regnet's ``value_and_grad`` does."""
    torch = _torch()
    loss = losses.get(config)
    value, grad = loss.value_and_grad(pred.copy(), target.copy())
    tp = torch.tensor(pred, requires_grad=True)
    tv = torch_fn(tp, torch.tensor(target))
    _close("value", value, tv.detach().numpy(), rtol, atol)
    tv.backward()
    _close("gradient", grad, tp.grad.numpy(), rtol, atol)


def optimizer_agrees(config, torch_optimizer, *, steps=20, seed=0, shapes=((5, 3), (3,)), rtol=RTOL, atol=ATOL):
    """``torch_optimizer(params)`` builds the PyTorch optimizer over a list of tensors."""
    torch = _torch()
    rng = np.random.default_rng(seed)
    params = {f"l/p{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(steps)]
    tparams = [torch.tensor(v.copy(), requires_grad=True) for v in params.values()]
    topt = torch_optimizer(tparams)
    opt = optimizers.get(config)
    for t in range(steps):
        if t == steps // 2:  # resume: a fresh optimizer from the saved state
            state = {k: np.array(v, copy=True) for k, v in opt.state_dict().items()}
            opt = optimizers.get(config)
            opt.load_state_dict(state)
        opt.step(params, grads[t])
        for p, g in zip(tparams, grads[t].values()):
            p.grad = torch.tensor(g)
        topt.step()
        for (k, v), p in zip(params.items(), tparams):
            _close(f"step {t + 1}, {k}", v, p.detach().numpy(), rtol, atol)


def torch_onnx_bytes(net, x, opset=17):
    """``net`` exported by ``torch.onnx.export`` (TorchScript exporter, input ``x`` with a dynamic
    batch axis named ``N``, output ``y``) as the bytes of an ONNX file."""
    import io
    import warnings

    torch = _torch()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.from_numpy(x),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}},
        )
    return buffer.getvalue()

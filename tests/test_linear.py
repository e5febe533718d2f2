"""The CPU Linear: the same forward and gradients as Paddle's, and a frozen weight
does not keep the layer's input alive."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest

from adaptformer.models.linear import Linear


def pair(in_features=48, out_features=80):
    ours, native = Linear(in_features, out_features), nn.Linear(in_features, out_features)
    native.weight.set_value(ours.weight.numpy())
    native.bias.set_value(paddle.randn(ours.bias.shape))
    ours.bias.set_value(native.bias.numpy())
    return ours, native


@pytest.mark.parametrize("weight_trains", [True, False])
@pytest.mark.parametrize("input_needs_grad", [True, False])
def test_same_outputs_and_gradients_as_nn_linear(weight_trains, input_needs_grad):
    ours, native = pair()
    x = paddle.randn([4, 7, 48])
    results = []
    for layer in (ours, native):
        layer.weight.stop_gradient = not weight_trains
        xi = x.detach()
        xi.stop_gradient = not input_needs_grad
        y = layer(xi)
        (y * paddle.arange(80, dtype="float32")).sum().backward()  # a non-uniform output gradient
        grads = [t.grad for t in (xi, layer.weight, layer.bias)]
        results.append((y.numpy(), [None if g is None else g.numpy() for g in grads]))
    (y_ours, g_ours), (y_native, g_native) = results
    np.testing.assert_array_equal(y_ours, y_native)
    for name, a, b in zip(("input", "weight", "bias"), g_ours, g_native):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=name)  # float32 summation order


def allocated():
    return paddle.base.core.host_memory_stat_current_value("Allocated", 0)


def test_a_frozen_stack_keeps_no_inputs_for_backward():
    def kept_after_forward(layer_type):
        layers = [layer_type(256, 256) for _ in range(4)]
        for layer in layers:
            layer.weight.stop_gradient = layer.bias.stop_gradient = True
        x = paddle.randn([4096, 256])
        x.stop_gradient = False  # something earlier trains, so the gradient must pass through
        before = allocated()
        y = x
        for layer in layers:
            y = layer(y)
        kept = allocated() - before - y.numel().item() * 4  # minus the output itself
        y.sum().backward()
        assert x.grad is not None
        return kept

    activation = 4096 * 256 * 4
    assert kept_after_forward(nn.Linear) >= 3 * activation  # Paddle keeps the inner inputs
    assert kept_after_forward(Linear) < activation


def test_static_graph_export_uses_paddles_linear():
    layer = Linear(8, 3)
    x = paddle.randn([2, 8])
    static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec([None, 8], "float32")], full_graph=True)
    np.testing.assert_allclose(static(x).numpy(), layer(x).numpy(), atol=1e-6)

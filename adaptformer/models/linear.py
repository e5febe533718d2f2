"""nn.Linear with a leaner backward pass on CPU.

Two things Paddle's own Linear does on CPU that cost time or memory (docs/benchmarks.md):
- the bias gradient is a column sum of the output gradient, which Paddle's CPU
  reduction computes far more slowly than the same sum as a matrix-vector product;
- the input is kept for the backward pass even when the weight is frozen and
  only the input gradient (dY W^T) will be computed, so a frozen backbone holds
  on to every Linear's input.

`Linear` computes the same forward with F.linear and, on CPU, a backward that keeps
the input only when the weight trains and sums the bias gradient as a product with
a vector of ones. Gradients equal the native ones within float32 summation order.
On GPU it is exactly nn.Linear. Parameter names do not change.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer


def _column_sums(g2d):
    return paddle.matmul(g2d, paddle.ones([g2d.shape[0]], dtype=g2d.dtype), transpose_x=True)


class _LinearFunction(PyLayer):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.x_grad = not x.stop_gradient
        ctx.w_grad = not weight.stop_gradient
        ctx.b_grad = not bias.stop_gradient
        ctx.save_for_backward(x if ctx.w_grad else None, weight if ctx.x_grad else None)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensor()
        dy2d = dy.reshape([-1, dy.shape[-1]])
        dx = paddle.matmul(dy, weight, transpose_y=True) if ctx.x_grad else None
        dw = paddle.matmul(x.reshape([-1, x.shape[-1]]), dy2d, transpose_x=True) if ctx.w_grad else None
        db = _column_sums(dy2d) if ctx.b_grad else None
        return dx, dw, db


class Linear(nn.Linear):
    def _cpu_backward(self, x) -> bool:
        # Static graphs (paddle.jit.to_static, export) and GPUs get Paddle's own Linear,
        # as does anything with no backward pass to run.
        if not paddle.in_dynamic_mode() or self.bias is None or not x.place.is_cpu_place():
            return False
        if not paddle.is_grad_enabled():
            return False
        return not (x.stop_gradient and self.weight.stop_gradient and self.bias.stop_gradient)

    def forward(self, x):
        if self._cpu_backward(x):
            return _LinearFunction.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

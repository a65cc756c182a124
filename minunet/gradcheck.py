"""Check a hand-written backward pass against central differences, in float64.

For each array a (an input or a parameter) the checker draws a random
direction d (standard normal entries) and compares two numbers that must agree:

    numeric   (L(a + eps d) - L(a - eps d)) / (2 eps)     two forward passes per step eps
    analytic  <dL/da, d>                                  from backward()

where L = sum(forward(x) * dy) with a random upstream gradient dy (never ones,
which would hide a transposed gradient), or dy = dloss/dlogits of a loss.
The error is |numeric - analytic| / max(|numeric|, |analytic|), the largest over
a few directions. This is chainer's ``check_backward``: cheap (2 forward passes
per direction) and sensitive to any wrong entry of the gradient.

    >>> report = check_layer(Conv2D(3, 4, dtype=np.float64), x)
    >>> print(report)            # a small table, one row per array
    >>> report.max_error < 1e-6
"""
import numpy as np

from .backend import get_array_module


class Report:
    """Largest relative error per checked array, printable as a table."""

    def __init__(self, title, rows):
        self.title = title
        self.rows = rows  # [(name, shape, error)]

    @property
    def errors(self):
        return {name: err for name, _, err in self.rows}

    @property
    def max_error(self):
        return max(err for _, _, err in self.rows)

    def __str__(self):
        lines = [self.title, f"  {'array':<24} {'shape':<20} {'max rel. error':>14}"]
        lines += [f"  {name:<24} {str(tuple(shape)):<20} {err:>14.2e}" for name, shape, err in self.rows]
        return "\n".join(lines)


def randomize_biases(layer, seed=0, scale=0.1):
    """Give every bias (of a layer, or of a whole model) small random values; returns it.

    Keras-style zero biases put a ReLU input exactly at its kink wherever the layer's
    input is zero, and there the one-sided slopes differ: a check would fail a correct
    gradient. Random biases keep the inputs off the kink, and a wrong bias gradient shows."""
    rng = np.random.default_rng(seed)
    for name, p in layer.params.items():
        if name.split("/")[-1] == "bias":
            xp = get_array_module(p)
            p[...] = xp.asarray(rng.normal(0, scale, p.shape))
    return layer


def _require_float64(arrays, what):
    for name, a in arrays.items():
        if a.dtype != np.float64:
            raise ValueError(f"gradcheck: {what} '{name}' is {a.dtype}; finite differences need float64: "
                             f"build the layer with dtype=np.float64 and pass float64 inputs")


def _directional_errors(measure, weight, arrays, grads, steps, directions, rng):
    """rows of (name, shape, max relative error) for each array, perturbed in place.

    L = sum(measure() * weight); the two outputs are subtracted before the sum, so
    rounding scales with the change of the output, not with the size of L. Each
    direction is tried at every step size and the smallest error counts: a kink
    (ReLU at 0, a max-pool near-tie) crossed at one step does not spoil the others,
    while a wrong gradient disagrees at every step."""
    rows = []
    for name, a in arrays.items():
        xp = get_array_module(a)
        analytic_grad = grads[name]
        worst = 0.0
        original = a.copy()
        for _ in range(directions):
            d = xp.asarray(rng.standard_normal(a.shape))   # every entry moves by about eps
            analytic = float((analytic_grad * d).sum())
            best = np.inf
            for eps in steps:
                a[...] = original + eps * d
                plus = measure().copy()  # copy: an output may be a view of the input
                a[...] = original - eps * d
                minus = measure().copy()
                a[...] = original
                numeric = float(((plus - minus) * weight).sum()) / (2 * eps)
                scale = max(abs(numeric), abs(analytic), 1e-300)
                best = min(best, abs(numeric - analytic) / scale)
            worst = max(worst, best)
        rows.append((name, a.shape, worst))
    return rows


def check_layer(layer, x, dy=None, loss=None, target=None, steps=(1e-5, 1e-6, 1e-7), directions=3, seed=0):
    """Check ``layer.backward`` (dx and every ``layer.grads`` entry) by central differences
    at each step size in ``steps``, along ``directions`` random directions per array.

    x is an array, or a list of arrays for Concatenate. Anything with forward,
    backward, params and grads can be checked, a whole UNet included; give
    ``loss`` (a function ``(logits, target) -> (loss, dlogits)``) and ``target``
    to check through a loss instead of through a random upstream gradient.
    """
    rng = np.random.default_rng(seed)
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    inputs = {("x" if len(xs) == 1 else f"x{k}"): a.copy() for k, a in enumerate(xs)}
    params = layer.params
    _require_float64(inputs, "input")
    _require_float64(params, "parameter")

    def run():
        arg = list(inputs.values()) if len(xs) > 1 else inputs["x"]
        return layer.forward(arg)

    y = run()
    xp = get_array_module(y)
    if loss is not None:
        # L = loss(forward(x)): the upstream gradient is the loss's dL/dlogits, and the
        # numeric side differences the logits and contracts them with it (first-order
        # exact; the loss's own gradient is what check_loss checks).
        _, seed_grad = loss(y, target)
    elif dy is None:
        seed_grad = xp.asarray(rng.standard_normal(y.shape))
    else:
        seed_grad = dy
    dxs = layer.backward(seed_grad)
    dxs = list(dxs) if isinstance(dxs, (list, tuple)) else [dxs]
    grads = {name: d.copy() for name, d in zip(inputs, dxs)}   # copies: later passes may reuse buffers
    grads.update({name: g.copy() for name, g in layer.grads.items()})
    arrays = {**inputs, **params}
    rows = _directional_errors(run, seed_grad, arrays, grads, steps, directions, rng)
    title = f"gradient check: {type(layer).__name__} '{getattr(layer, 'name', '')}' (float64, {directions} random directions, steps {steps})"
    return Report(title, rows)


def check_loss(loss, logits, target, steps=(1e-5, 1e-6, 1e-7), directions=3, seed=0):
    """Check the dlogits that ``loss(logits, target)`` returns by central differences."""
    rng = np.random.default_rng(seed)
    arrays = {"logits": logits.copy()}
    _require_float64(arrays, "input")
    _, dlogits = loss(arrays["logits"], target)

    xp = get_array_module(logits)

    def measure():
        return xp.asarray(loss(arrays["logits"], target)[0])

    rows = _directional_errors(measure, 1.0, arrays, {"logits": dlogits}, steps, directions, rng)
    return Report(f"gradient check: {getattr(loss, '__name__', 'loss')} (float64, {directions} random directions, steps {steps})", rows)

"""Optimizers that update parameter arrays in place: ``opt.step(grads)``.

Adam (Kingma & Ba, in Keras's form: bias correction folded into the step size,
epsilon outside the square root)::

    m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
    p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

SGD with momentum (Keras's form)::

    u <- momentum u - lr g          p <- p + u

``state_dict()`` / ``load_state_dict()`` save and restore the step count and the
moment arrays, keyed like ``model.params``.
"""
from .backend import get_array_module, to_numpy

CHUNK = 1 << 16  # Adam updates this many elements at a time, so that its arrays' chunks stay in cache
                 # between its passes (docs/READING.md, the ledger)


class Optimizer:
    """Holds references to the parameter arrays and one dict of slot arrays per moment."""

    slot_names = ()

    def __init__(self, params, lr):
        for k, p in params.items():
            if not p.flags.c_contiguous:
                raise ValueError(f"{type(self).__name__}: parameter {k} is not contiguous; updates in place "
                                 f"need contiguous arrays (use np.ascontiguousarray before building the model)")
        self.params = params  # dict name -> array, updated in place
        self.lr = float(lr)
        self.iterations = 0
        self.slots = {s: {k: get_array_module(p).zeros_like(p) for k, p in params.items()} for s in self.slot_names}

    def step(self, grads):
        """One update of every parameter from ``grads`` (same keys as ``params``)."""
        if grads.keys() != self.params.keys():
            missing = sorted(set(self.params) ^ set(grads))
            raise ValueError(f"{type(self).__name__}.step: grads do not match params (differ on {missing[:3]}); "
                             f"call model.backward before step")
        self.iterations += 1
        for k, p in self.params.items():
            self._update(k, p, grads[k].astype(p.dtype, copy=False))

    def config(self):
        return {"name": type(self).__name__, "lr": self.lr}

    def state_dict(self):
        """Config, step count and slots (as NumPy arrays), ready to be written to a file."""
        return {"config": self.config(), "iterations": self.iterations,
                "slots": {s: {k: to_numpy(a) for k, a in d.items()} for s, d in self.slots.items()}}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned; slot arrays are copied into place."""
        self.iterations = int(state["iterations"])
        for s, d in self.slots.items():
            for k, a in d.items():
                a[...] = get_array_module(a).asarray(state["slots"][s][k])


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, params, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(params, lr)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._tmp = None                         # CHUNK elements of scratch, made at the first step

    def config(self):
        return {**super().config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def _update(self, k, p, g):
        xp = get_array_module(p)
        b1, b2, t = self.beta_1, self.beta_2, self.iterations
        alpha = self.lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
        p, g, m, v = (a.reshape(-1) for a in (p, g, self.slots["m"][k], self.slots["v"][k]))   # flat views
        if self._tmp is None or self._tmp.dtype != p.dtype:
            self._tmp = xp.empty(CHUNK, dtype=p.dtype)
        for start in range(0, p.size, CHUNK):    # a chunk at a time, with one small temporary
            chunk = slice(start, start + CHUNK)
            p_c, g_c, m_c, v_c = p[chunk], g[chunk], m[chunk], v[chunk]
            tmp = self._tmp[: p_c.size]
            m_c *= b1                            # m <- b1 m + (1 - b1) g
            m_c += xp.multiply(g_c, 1 - b1, out=tmp)
            v_c *= b2                            # v <- b2 v + (1 - b2) g^2
            xp.multiply(g_c, g_c, out=tmp)
            tmp *= 1 - b2
            v_c += tmp
            xp.sqrt(v_c, out=tmp)                # p <- p - alpha m / (sqrt(v) + eps)
            tmp += self.epsilon
            xp.divide(m_c, tmp, out=tmp)
            tmp *= alpha
            p_c -= tmp


class SGD(Optimizer):
    slot_names = ("velocity",)

    def __init__(self, params, lr=0.01, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = float(momentum)

    def config(self):
        return {**super().config(), "momentum": self.momentum}

    def _update(self, k, p, g):
        u = self.slots["velocity"][k]
        u *= self.momentum
        u -= self.lr * g
        p += u


OPTIMIZERS = {"Adam": Adam, "SGD": SGD}


def from_config(params, config):
    """A new optimizer over ``params`` from ``config()``'s dict."""
    config = dict(config)
    name = config.pop("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; minunet has {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **config)

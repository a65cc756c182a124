"""The U-Net: encoder, bridge, decoder with skip connections, and a 1x1 head.

    x ─ enc1 ──────────────────────────────── dec1 ─ head ─ logits
          └ pool ─ enc2 ──────────── dec2 ─┘ up
                    └ pool ─ ... bridge ─┘ up

Encoder level k (1..depth): two (Conv2D 3x3 'same' + ReLU) with base * 2^(k-1)
filters, then MaxPool2D 2x2. The bridge: two (Conv2D + ReLU) with base * 2^depth
filters. Decoder level k: up-sample (ConvTranspose2D 2x2 stride 2 to base * 2^(k-1)
filters, or nearest UpSampling2D that keeps the channels), concatenate
[up-sampled, skip], two (Conv2D + ReLU). Head: Conv2D 1x1 to n_classes (softmax)
or to 1 channel (sigmoid). ``forward`` returns logits; the activation is fused
into the loss (``minunet.losses``) and applied by ``predict``.
"""
import json
from collections import OrderedDict

import numpy as np

from . import __version__, h5file
from .backend import DEFAULT_DTYPE, asarray, get_array_module, to_numpy
from .layers import Concatenate, Conv2D, ConvTranspose2D, MaxPool2D, UpSampling2D, sigmoid, softmax
from .optim import from_config as optimizer_from_config

FORMAT = "minunet"
FORMAT_VERSION = 1


def _backward(layer, dy, **options):
    """layer.backward(dy), then drop what its forward kept: the network's activations are
    freed level by level as the backward pass leaves them, not at the next forward."""
    dx = layer.backward(dy, **options)
    layer._cache = None
    return dx


class ConvBlock:
    """Two Conv2D 3x3 'same' with ReLU (Keras's ``activation='relu'``): the body of every
    U-Net level."""

    def __init__(self, name, in_channels, filters, dtype, rng):
        self.layers = [
            Conv2D(in_channels, filters, 3, activation="relu", dtype=dtype, rng=rng, name=f"{name}/conv1"),
            Conv2D(filters, filters, 3, activation="relu", dtype=dtype, rng=rng, name=f"{name}/conv2"),
        ]

    def forward(self, x):
        conv1, conv2 = self.layers
        return conv2.forward(conv1.forward(x))

    def backward(self, dy, input_gradient=True):
        conv1, conv2 = self.layers
        return _backward(conv1, _backward(conv2, dy), input_gradient=input_gradient)


class UNet:
    """U-Net for 2D segmentation, NHWC. ``depth`` counts encoder levels (the seed's 5;
    Ronneberger's original is 4). H and W must be multiples of 2**depth.

    The seed's simplified Keras model is ``UNet(depth=1, base_filters=64,
    upsampling="nearest", head="sigmoid")``: 406,657 parameters, as Keras counts.
    """

    def __init__(self, in_channels=1, n_classes=2, depth=5, base_filters=64, upsampling="transpose",
                 head="softmax", dtype=DEFAULT_DTYPE, seed=0):
        if upsampling not in ("transpose", "nearest"):
            raise ValueError(f"UNet upsampling must be 'transpose' or 'nearest', received {upsampling!r}")
        if head not in ("softmax", "sigmoid"):
            raise ValueError(f"UNet head must be 'softmax' or 'sigmoid', received {head!r}")
        if head == "softmax" and n_classes < 2:
            raise ValueError(f"a softmax head needs n_classes >= 2, received {n_classes}; use head='sigmoid' for one")
        if head == "sigmoid" and n_classes not in (1, 2):
            raise ValueError(f"a sigmoid head segments one class (n_classes 1 or 2), received {n_classes}")
        if int(depth) < 1 or int(base_filters) < 1:
            raise ValueError(f"UNet needs depth >= 1 and base_filters >= 1, received {depth}, {base_filters}")
        self.config = {"in_channels": int(in_channels), "n_classes": int(n_classes), "depth": int(depth),
                       "base_filters": int(base_filters), "upsampling": upsampling, "head": head,
                       "dtype": np.dtype(dtype).name, "seed": seed}
        self.depth = int(depth)
        self.head_activation = head
        rng = np.random.default_rng(seed)
        filters = [base_filters * 2**k for k in range(depth + 1)]  # level 1..depth, then the bridge

        self.down, self.pools = [], []
        c = in_channels
        for k in range(depth):
            self.down.append(ConvBlock(f"enc{k + 1}", c, filters[k], dtype, rng))
            self.pools.append(MaxPool2D(2, name=f"enc{k + 1}/pool"))
            c = filters[k]
        self.bridge = ConvBlock("bridge", c, filters[depth], dtype, rng)
        c = filters[depth]
        self.ups, self.concats, self.up_blocks = [], [], []
        for k in reversed(range(depth)):  # deepest decoder level first
            name = f"dec{k + 1}"
            if upsampling == "transpose":
                self.ups.append(ConvTranspose2D(c, filters[k], 2, 2, dtype=dtype, rng=rng, name=f"{name}/up"))
                c = filters[k]
            else:
                self.ups.append(UpSampling2D(2, name=f"{name}/up"))
            self.concats.append(Concatenate(name=f"{name}/concat"))
            self.up_blocks.append(ConvBlock(name, c + filters[k], filters[k], dtype, rng))
            c = filters[k]
        out = n_classes if head == "softmax" else 1
        self.head = Conv2D(c, out, 1, dtype=dtype, rng=rng, name="head")

    # ----------------------------------------------------------------- structure
    @property
    def layers(self):
        """Every layer in the order of the forward pass."""
        out = []
        for block, pool in zip(self.down, self.pools):
            out += block.layers + [pool]
        out += self.bridge.layers
        for up, concat, block in zip(self.ups, self.concats, self.up_blocks):
            out += [up, concat] + block.layers
        return out + [self.head]

    @property
    def params(self):
        """OrderedDict 'enc1/conv1/kernel' -> array, in layer order (references, not copies)."""
        return OrderedDict((f"{l.name}/{k}", v) for l in self.layers for k, v in l.params.items())

    @property
    def grads(self):
        """OrderedDict with the same keys as ``params``, filled by ``backward``."""
        return OrderedDict((f"{l.name}/{k}", l.grads[k]) for l in self.layers for k in l.params)

    @property
    def n_params(self):
        return int(sum(p.size for p in self.params.values()))

    @property
    def dtype(self):
        return np.dtype(self.config["dtype"])

    def check_input(self, x):
        """Raise a ValueError unless x is (N, H, W, in_channels) with H, W multiples of 2**depth."""
        m = 2**self.depth
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 4 or shape[3] != self.config["in_channels"]:
            raise ValueError(f"UNet: expected input (N, H, W, {self.config['in_channels']}), received shape {shape}")
        for size in shape[1:3]:
            if size % m:
                lo, hi = (size // m) * m, (size // m + 1) * m
                raise ValueError(f"UNet of depth {self.depth}: H and W must be multiples of 2**{self.depth} = {m}, "
                                 f"received {shape[1]}x{shape[2]}; nearest valid sizes for {size}: "
                                 f"{', '.join(str(s) for s in (lo, hi) if s > 0)} (minunet.model.pad_to_multiple pads)")

    # ------------------------------------------------------------ forward / backward
    def forward(self, x, training=True):
        """Logits (N, H, W, n_classes), or (N, H, W, 1) for a sigmoid head. With
        ``training=False`` nothing is kept for backward (minunet has no layer, such as
        dropout, that behaves differently in training; this only frees memory)."""
        logits = self.features(x)["head"]
        if not training:
            for layer in self.layers:
                layer._cache = None
        return logits

    def features(self, x):
        """{level name: its output} for every encoder level, the bridge, every decoder
        level and the head (logits): what each level of the network sees."""
        return dict(self._levels(x))

    def _levels(self, x):
        """The forward pass, yielding (name, output) after each level: the diagram above."""
        self.check_input(x)
        skips = []
        for k, (block, pool) in enumerate(zip(self.down, self.pools)):   # encoder, shallowest level first
            x = block.forward(x)
            yield f"enc{k + 1}", x
            skips.append(x)
            x = pool.forward(x)
        x = self.bridge.forward(x)
        yield "bridge", x
        for k, (up, concat, block) in enumerate(zip(self.ups, self.concats, self.up_blocks)):   # deepest first
            x = block.forward(concat.forward([up.forward(x), skips.pop()]))    # [up-sampled, skip]
            yield f"dec{self.depth - k}", x
        yield "head", self.head.forward(x)

    def backward(self, dlogits, input_gradient=True):
        """Back-propagate dL/dlogits through the net; fills ``grads``; returns dL/dx.
        Frees the activations the forward pass kept, so it runs once per forward.
        ``input_gradient=False`` returns None and skips dL/dx, the first convolution's
        last product (a training step, as in Keras and PyTorch, has no use for it)."""
        if self.head._cache is None:
            raise ValueError("UNet.backward: no forward pass to go back through; call model.forward(x) "
                             "(with training=True) before each backward")
        dx = _backward(self.head, dlogits)
        dskips = []
        for up, concat, block in zip(reversed(self.ups), reversed(self.concats), reversed(self.up_blocks)):
            dup, dskip = _backward(concat, block.backward(dx))
            dskips.append(dskip)          # shallowest level first
            dx = _backward(up, dup)
        dx = self.bridge.backward(dx)
        for block, pool, dskip in zip(reversed(self.down), reversed(self.pools), reversed(dskips)):
            dx = _backward(pool, dx)
            dx += dskip                                        # the skip's gradient joins the pool's
            dx = block.backward(dx, input_gradient=input_gradient or block is not self.down[0])
        return dx

    def activation(self, logits):
        """The head's activation: softmax over classes or sigmoid."""
        return sigmoid(logits) if self.head_activation == "sigmoid" else softmax(logits, axis=-1)

    def predict(self, x, batch_size=8):
        """Probabilities for images (N, H, W, C) of any N and any H, W (padded to a valid
        size, then cropped back); returned on the input's backend, in the model's dtype."""
        x_mod = get_array_module(x)
        padded, crop = pad_to_multiple(x, 2**self.depth)
        out = []
        for start in range(0, len(padded), batch_size):
            batch = asarray(padded[start : start + batch_size], dtype=self.dtype)
            out.append(to_numpy(self.activation(self.forward(batch, training=False))))
        probs = np.concatenate(out)[crop] if out else np.zeros((0,) + tuple(x.shape[1:3]) + (self.head.filters,), self.dtype)
        return probs if x_mod is np else x_mod.asarray(probs)

    def segment(self, x, batch_size=8):
        """Label maps (N, H, W) uint8: the arg-max class, or probability > 0.5 for a sigmoid head."""
        return labels(to_numpy(self.predict(x, batch_size)))

    # ------------------------------------------------------------------ summary
    def summary(self, input_size=128, print_fn=print):
        """A Keras-like table of layers, output shapes (the shape rules at work), parameters
        and multiply-adds of one forward pass for one (input_size x input_size) image."""
        h = w = int(input_size)
        self.check_input(np.empty((0, h, w, self.config["in_channels"])))
        rows, shape, skips = [], (None, h, w, self.config["in_channels"]), []
        macs_total = 0

        def add(layer, in_shape, out_shape):
            nonlocal macs_total
            n_par = int(sum(p.size for p in layer.params.values()))
            macs = 0
            if isinstance(layer, (Conv2D, ConvTranspose2D)):
                kh, kw = layer.kernel_size
                pix = (out_shape[1] * out_shape[2]) if isinstance(layer, Conv2D) else (in_shape[1] * in_shape[2])
                macs = pix * kh * kw * layer.in_channels * layer.filters
            macs_total += macs
            rows.append((f"{layer.name} ({type(layer).__name__})", out_shape, n_par, macs))

        for layer in self.layers:
            if isinstance(layer, Concatenate):
                out = layer.output_shape([shape, skips.pop()])
            else:
                out = layer.output_shape(shape)
            if isinstance(layer, MaxPool2D):
                skips.append(shape)
            add(layer, shape, out)
            shape = out
        width = 34
        lines = [f'Model: "UNet" (depth {self.depth}, base {self.config["base_filters"]}, '
                 f'{self.config["upsampling"]} up-sampling, {self.head_activation} head)',
                 f"{'Layer (type)':<{width}} {'Output Shape':<22} {'Param #':>10} {'MACs':>14}", "=" * (width + 49)]
        lines += [f"{name:<{width}} {str(s):<22} {p:>10,} {m:>14,}" for name, s, p, m in rows]
        lines += ["=" * (width + 49), f"Total params: {self.n_params:,}",
                  f"Multiply-adds per {h}x{w} image (forward): {macs_total:,} ({2 * macs_total / 1e9:.2f} GFLOP)",
                  "Shape rules: 'same' conv keeps H, W; pool: (in - 2) // 2 + 1; up-sampling: in * 2"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    # -------------------------------------------------------------------- files
    #: What the model expects of its input, written to its file by ``save`` and read back
    #: by ``load``: {"size": [H, W] it was trained at, "normalization": {...}, "label_map":
    #: {mask value: class}} (see ``minunet.cli``). None: unknown (a file older than it).
    metadata = None

    def save(self, path, optimizer=None, history=None, state=None):
        """Write an HDF5 model file atomically: config, weights, ``metadata`` if set, and
        optionally the optimizer (state and step), the training history and a training
        ``state`` dict (JSON-serializable: epoch, best score, ...). Read back with
        ``minunet.load`` or ``minunet.load_checkpoint``."""
        def write(f):
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["minunet_version"] = __version__
            f.attrs["config"] = json.dumps(self.config)
            if self.metadata is not None:
                f.attrs["metadata"] = json.dumps(self.metadata)
            h5file.write_arrays(f.create_group("weights"), {k: to_numpy(v) for k, v in self.params.items()})
            if optimizer is not None:
                sd = optimizer.state_dict()
                g = f.create_group("optimizer")
                g.attrs["config"] = json.dumps(sd["config"])
                g.attrs["iterations"] = sd["iterations"]
                for slot, arrays in sd["slots"].items():
                    h5file.write_arrays(g.create_group(slot), arrays)
            f.attrs["history"] = json.dumps(history or {})
            f.attrs["state"] = json.dumps(state or {})

        size = sum(v.nbytes for v in self.params.values())
        h5file.write_atomic(path, write, size_hint=size * (3 if optimizer is not None else 1))


class Checkpoint:
    """What a model file holds: the model, its optimizer (or None), history and state."""

    def __init__(self, model, optimizer, history, state):
        self.model, self.optimizer, self.history, self.state = model, optimizer, history, state


def load_checkpoint(path):
    """Read a file written by ``UNet.save``: model, optimizer restored with its step and
    moments, history and training state. Raises one ValueError for a foreign, corrupt,
    damaged (NaN or infinite weights) or newer-format file."""
    with h5file.open_read(path) as f:
        fmt = f.attrs.get("format")
        if fmt != FORMAT:
            hint = " (a Keras file: use minunet.keras_h5)" if "keras_version" in f.attrs else ""
            raise ValueError(f"{path}: not a minunet model file{hint}; save one with model.save(path)")
        version = int(f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: model file format {version} is newer than this minunet reads "
                             f"({FORMAT_VERSION}); upgrade minunet")
        config = _json_attr(f, "config", path, None)
        try:
            model = UNet(**config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: its config {config} does not describe a UNet ({e}); the file is damaged") from None
        if "weights" not in f:
            raise ValueError(f"{path}: has no 'weights' group (the file is damaged or incomplete); "
                             f"use another copy or save the model again")
        weights = h5file.read_arrays(f["weights"], path)
        _copy_into(model.params, weights, path)
        check_finite(weights, path)
        optimizer = None
        if "optimizer" in f:
            g = f["optimizer"]
            optimizer = optimizer_from_config(model.params, _json_attr(g, "config", path, None))
            missing = [s for s in optimizer.slot_names if s not in g]
            if missing:
                raise ValueError(f"{path}: the optimizer state lacks {missing}; the file is damaged")
            slots = {s: h5file.read_arrays(g[s], path) for s in optimizer.slot_names}
            for s, arrays in slots.items():
                check_finite(arrays, path, what=f"optimizer {s}")
            optimizer.load_state_dict({"iterations": int(g.attrs["iterations"]), "slots": slots})
        history = _json_attr(f, "history", path, {})
        state = _json_attr(f, "state", path, {})
        if "metadata" in f.attrs:                     # absent from files written before it existed
            model.metadata = _json_attr(f, "metadata", path, {})
    return Checkpoint(model, optimizer, history, state)


def _json_attr(obj, name, path, default):
    """A JSON attribute, or a ValueError that names the file and the attribute."""
    if name not in obj.attrs:
        if default is None:
            raise ValueError(f"{path}: has no '{name}' attribute; the file is damaged or not a minunet model file")
        return default
    raw = obj.attrs[name]
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its '{name}' attribute is not valid JSON ({e}); the file is damaged") from None


def check_finite(arrays, path, what="weight"):
    """Raise a ValueError naming the first array of ``{name: array}`` that holds NaN or
    infinity: a model with such a weight predicts nothing useful, so it is refused."""
    for k, a in arrays.items():
        a = to_numpy(a)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"{path}: {what} {k} holds {bad} NaN or infinite value(s); the file is damaged "
                             f"(a diverged run?): use an earlier checkpoint or train again")


def load(path):
    """The UNet saved in ``path`` (weights exact, bit for bit)."""
    return load_checkpoint(path).model


def _copy_into(params, arrays, path):
    if params.keys() != arrays.keys():
        missing = sorted(set(params) ^ set(arrays))
        raise ValueError(f"{path}: weights do not match the saved config (differ on {missing[:3]}); the file is corrupt")
    for k, p in params.items():
        if p.shape != arrays[k].shape:
            raise ValueError(f"{path}: weight {k} has shape {arrays[k].shape}, expected {p.shape}; the file is corrupt")
        p[...] = get_array_module(p).asarray(arrays[k])


def labels(probs):
    """Label maps (N, H, W) uint8 from probabilities (N, H, W, K): the arg-max class, or
    probability > 0.5 for a single sigmoid channel."""
    out = probs[..., 0] > 0.5 if probs.shape[-1] == 1 else probs.argmax(axis=-1)
    return out.astype(np.uint8)


def pad_to_multiple(x, multiple):
    """Pad images (N, H, W, C) at the bottom/right, repeating the edge, to multiples of
    ``multiple``. Returns the padded array and the index that crops a result back."""
    xp = get_array_module(x)
    n, h, w = x.shape[:3]
    ph, pw = -h % multiple, -w % multiple
    crop = (slice(None), slice(0, h), slice(0, w))
    if ph == 0 and pw == 0:
        return x, crop
    return xp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge"), crop

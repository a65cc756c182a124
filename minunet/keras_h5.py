"""Read and write Keras ``.h5`` model files of U-Nets, without TensorFlow.

A legacy Keras model file (``model.save("m.h5")`` in Keras 3 and in Keras 2 / tf.keras)
holds, as checked against files written by Keras 3.15 and tf_keras 2.21:

* root attributes ``keras_version``, ``backend`` and ``model_config``: the layer graph as
  JSON (str or bytes, by h5py version). Keras 3 spells a layer's inputs as
  ``{"args": [tensor or [tensors]], ...}`` with ``keras_history: [layer, node, index]``;
  Keras 2 as ``[[[layer, node, index, kwargs], ...]]``. The input's shape is
  ``batch_shape`` (Keras 3) or ``batch_input_shape`` (Keras 2);
* ``/model_weights/<layer>/`` with attribute ``weight_names`` in order, kernel then bias:
  ``conv2d/kernel`` (Keras 3) or ``conv2d/kernel:0`` (Keras 2);
* Conv2D kernels ``(kh, kw, in, out)``; Conv2DTranspose kernels ``(kh, kw, out, in)``,
  not flipped: minunet's own layouts, so weights copy over unchanged;
* ``concatenate([up, skip])`` puts the up-sampled channels first, as minunet does; a
  model that concatenates ``[skip, up]`` is read by permuting the next kernel's inputs.

A Keras 3 weights-only file (``.weights.h5``) has ``layers/<class>_<i>/vars/0, 1`` and
no graph: ``load_weights`` maps it onto a UNet of the same configuration.
"""
import json
import warnings

import h5py
import numpy as np

from . import __version__
from .backend import get_array_module, to_numpy
from .h5file import open_read, write_atomic
from .model import UNet, check_finite


class KerasImportError(ValueError):
    """A Keras file that minunet's UNet cannot express; names the layer and the reason."""


def is_keras_file(path):
    """True for an HDF5 file written by Keras (a model or a weights-only file)."""
    try:
        with h5py.File(path, "r") as f:
            return "keras_version" in f.attrs or "model_weights" in f or ("layers" in f and "vars" in f)
    except OSError:
        return False


# ------------------------------------------------------------------ reading
def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _inbound(layer):
    """Names of the layers feeding ``layer``, for Keras 3 and Keras 2 spellings."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise KerasImportError(f"layer '{layer['config']['name']}' is called {len(nodes)} times; "
                               f"minunet reads U-Nets whose layers are used once")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):                                         # Keras 3
        args = node["args"][0]
        tensors = args if isinstance(args, list) else [args]
        return [t["config"]["keras_history"][0] for t in tensors]
    return [entry[0] for entry in node]                                # Keras 2


class _Graph:
    """The functional graph: layers by name, their inputs, and the walk back from the output."""

    def __init__(self, config, path):
        cfg = config["config"]
        self.path = path
        self.layers = {l["config"]["name"]: l for l in cfg["layers"]}
        self.inputs = {name: _inbound(l) for name, l in self.layers.items()}
        outputs = cfg["output_layers"]
        outputs = outputs if isinstance(outputs[0], list) else [outputs]
        if len(outputs) != 1:
            raise KerasImportError(f"{path}: the model has {len(outputs)} outputs; a U-Net has one")
        self.output = outputs[0][0]
        self.dropped = []

    def kind(self, name):
        return self.layers[name]["class_name"]

    def cfg(self, name):
        return self.layers[name]["config"]

    def refuse(self, name, reason):
        raise KerasImportError(f"{self.path}: layer '{name}' ({self.kind(name)}) {reason}")

    def source(self, name):
        """The single input of ``name``, skipping Dropout (the identity at inference)."""
        ins = self.inputs[name]
        if len(ins) != 1:
            self.refuse(name, f"has {len(ins)} inputs where the U-Net has one")
        src = ins[0]
        while self.kind(src) in ("Dropout", "SpatialDropout2D"):
            self.dropped.append(src)
            src = self.inputs[src][0]
        return src

    def relu_conv(self, name):
        """The Conv2D 3x3 'same' behind ``name``, which must apply a ReLU (inline or as a layer)."""
        if self.kind(name) in ("Dropout", "SpatialDropout2D"):
            self.dropped.append(name)
            name = self.inputs[name][0]
        if self.kind(name) in ("ReLU", "Activation"):
            if self.kind(name) == "Activation" and self.cfg(name)["activation"] != "relu":
                self.refuse(name, "is not a ReLU, the U-Net's only hidden activation")
            conv = self.source(name)
            if self.kind(conv) != "Conv2D" or self.cfg(conv).get("activation", "linear") != "linear":
                self.refuse(name, "does not follow a linear Conv2D")
        else:
            conv = name
            if self.kind(conv) != "Conv2D":
                self.refuse(conv, "stands where the U-Net has a Conv2D 3x3 + ReLU; minunet cannot express it")
            if self.cfg(conv).get("activation") != "relu":
                self.refuse(conv, f"has activation {self.cfg(conv).get('activation')!r}; the U-Net's convolutions use ReLU")
        self.check_conv(conv, 3)
        return conv

    def check_conv(self, name, k):
        c = self.cfg(name)
        if list(c["kernel_size"]) != [k, k]:
            self.refuse(name, f"has kernel_size {c['kernel_size']}; the U-Net uses {k}x{k} here")
        if list(c.get("strides", [1, 1])) != [1, 1] or list(c.get("dilation_rate", [1, 1])) != [1, 1]:
            self.refuse(name, "has strides or dilation other than 1; the U-Net's convolutions have neither")
        if k > 1 and c.get("padding") != "same":
            self.refuse(name, f"has padding {c.get('padding')!r}; the U-Net uses 'same'")
        if c.get("groups", 1) != 1 or c.get("data_format", "channels_last") != "channels_last":
            self.refuse(name, "uses groups or channels_first, which minunet does not have")


def _parse(config, path):
    """The UNet configuration and the Keras layer name of every minunet layer."""
    g = _Graph(config, path)
    names = {}
    head = g.output
    activation = g.cfg(head).get("activation", "linear")
    if g.kind(head) in ("Activation", "Softmax"):
        activation = "softmax" if g.kind(head) == "Softmax" else g.cfg(head)["activation"]
        head = g.source(head)
    if g.kind(head) != "Conv2D":
        g.refuse(head, "is the output; the U-Net ends in a Conv2D 1x1")
    g.check_conv(head, 1)
    if activation not in ("softmax", "sigmoid"):
        g.refuse(head, f"has activation {activation!r}; the head must be softmax or sigmoid")
    n_out = g.cfg(head)["filters"]
    if activation == "sigmoid" and n_out != 1:
        g.refuse(head, f"has {n_out} sigmoid outputs; minunet's sigmoid head has one")
    names["head"] = head

    decoder, x = [], g.source(head)
    while True:
        conv2 = g.relu_conv(x)
        conv1 = g.relu_conv(g.source(conv2))
        node = g.source(conv1)
        if g.kind(node) != "Concatenate":
            break
        a, b = g.inputs[node]
        ups = [n for n in (a, b) if g.kind(n) in ("Conv2DTranspose", "UpSampling2D")]
        if len(ups) != 1:
            g.refuse(node, "does not join one up-sampling and one skip connection")
        up = ups[0]
        skip = b if up == a else a
        decoder.append({"conv1": conv1, "conv2": conv2, "up": up, "skip": skip, "up_first": up == a, "concat": node})
        x = g.source(up)
    bridge = (conv1, conv2)
    depth = len(decoder)
    if depth == 0:
        g.refuse(node, "comes before the last convolutions; a U-Net has at least one up-sampling level")
    encoder = []
    for _ in range(depth):
        if g.kind(node) != "MaxPooling2D":
            g.refuse(node, "stands where the U-Net max-pools")
        pc = g.cfg(node)
        if list(pc["pool_size"]) != [2, 2] or list(pc.get("strides") or pc["pool_size"]) != [2, 2]:
            g.refuse(node, f"pools {pc['pool_size']} with strides {pc.get('strides')}; the U-Net pools 2x2, stride 2")
        conv2 = g.relu_conv(g.source(node))
        conv1 = g.relu_conv(g.source(conv2))
        encoder.append((conv1, conv2))
        node = g.source(conv1)
    if g.kind(node) != "InputLayer":
        g.refuse(node, "stands before the first encoder level; expected the input")
    shape = g.cfg(node).get("batch_shape") or g.cfg(node).get("batch_input_shape")
    encoder.reverse()                      # level 1 first; the walk back from the head found dec1 first

    base = g.cfg(encoder[0][0])["filters"]
    modes = {g.kind(level["up"]) for level in decoder}
    if len(modes) != 1:
        g.refuse(decoder[0]["up"], "mixes transposed convolutions and UpSampling2D; minunet uses one kind")
    upsampling = "transpose" if modes == {"Conv2DTranspose"} else "nearest"
    for k, (c1, c2) in enumerate(encoder + [bridge]):
        for conv in (c1, c2):
            if g.cfg(conv)["filters"] != base * 2**k:
                g.refuse(conv, f"has {g.cfg(conv)['filters']} filters; minunet's UNet has base * 2**level = {base * 2 ** k} here")
        if k < depth and decoder[k]["skip"] != c2:
            g.refuse(decoder[k]["concat"], f"skips from '{decoder[k]['skip']}', expected encoder level {k + 1} ('{c2}')")
        level = "bridge" if k == depth else f"enc{k + 1}"
        names[f"{level}/conv1"], names[f"{level}/conv2"] = c1, c2
    for k, level in enumerate(decoder):
        up, c = level["up"], g.cfg(level["up"])
        if upsampling == "transpose":
            if list(c["kernel_size"]) != [2, 2] or list(c["strides"]) != [2, 2] or c.get("activation", "linear") != "linear":
                g.refuse(up, "is not a linear 2x2, stride-2 transposed convolution")
            if c["filters"] != base * 2**k:
                g.refuse(up, f"has {c['filters']} filters; expected {base * 2 ** k}")
            names[f"dec{k + 1}/up"] = up
        elif list(c["size"]) != [2, 2] or c.get("interpolation", "nearest") != "nearest":
            g.refuse(up, "is not a 2x nearest up-sampling")
        for conv in (level["conv1"], level["conv2"]):
            if g.cfg(conv)["filters"] != base * 2**k:
                g.refuse(conv, f"has {g.cfg(conv)['filters']} filters; expected {base * 2 ** k}")
        names[f"dec{k + 1}/conv1"], names[f"dec{k + 1}/conv2"] = level["conv1"], level["conv2"]
    for name in dict.fromkeys(g.dropped):
        warnings.warn(f"{path}: layer '{name}' ({g.kind(name)}) is the identity at inference; minunet leaves it out",
                      stacklevel=3)
    unet = dict(in_channels=int(shape[-1]), n_classes=n_out if activation == "softmax" else 1, depth=depth,
                base_filters=base, upsampling=upsampling, head=activation)
    swapped = {f"dec{k + 1}/conv1": (base * 2**k if upsampling == "transpose" else base * 2 ** (k + 1))
               for k, level in enumerate(decoder) if not level["up_first"]}
    return unet, names, swapped


def _read_layer_weights(group, layer, path):
    """(kernel, bias or None) of one layer of /model_weights."""
    if layer not in group:
        raise KerasImportError(f"{path}: no weights for layer '{layer}' under /model_weights")
    g = group[layer]
    arrays = {}
    for wn in g.attrs.get("weight_names", []):
        wn = _text(wn)
        if wn not in g:
            raise KerasImportError(f"{path}: layer '{layer}' lists the weight '{wn}' but the file does not hold it; "
                                   f"the file is incomplete: save the model from Keras again")
        arrays["kernel" if "kernel" in wn.rsplit("/", 1)[-1] else "bias"] = np.asarray(g[wn])
    if "kernel" not in arrays:
        raise KerasImportError(f"{path}: layer '{layer}' has no kernel among {list(g.attrs.get('weight_names', []))}")
    return arrays["kernel"], arrays.get("bias")


def _assign(model, key, kernel, bias, swap_at, path):
    """Copy one Keras layer's weights into minunet's layer ``key``."""
    layer = next(l for l in model.layers if l.name == key)
    if swap_at is not None:                      # Keras concatenated [skip, up]: put the up channels first
        kernel = np.concatenate([kernel[:, :, -swap_at:], kernel[:, :, :-swap_at]], axis=2)
    if kernel.shape != layer.params["kernel"].shape:
        raise KerasImportError(f"{path}: kernel of {key} is {kernel.shape}, expected {layer.params['kernel'].shape}")
    xp = get_array_module(layer.params["kernel"])
    layer.params["kernel"][...] = xp.asarray(kernel)
    layer.params["bias"][...] = 0 if bias is None else xp.asarray(bias)


def load(path):
    """A UNet with the weights of a Keras legacy .h5 model file (Keras 3 or Keras 2)."""
    with open_read(path) as f:
        if "model_config" not in f.attrs:
            raise KerasImportError(f"{path}: no model_config attribute (a weights-only file?); "
                                   f"use keras_h5.load_weights(UNet(...), path) with the matching configuration")
        try:
            config = json.loads(_text(f.attrs["model_config"]))
        except ValueError as e:
            raise KerasImportError(f"{path}: its model_config attribute is not valid JSON ({e}); "
                                   f"the file is damaged: save the model from Keras again") from None
        try:
            unet, names, swapped = _parse(config, path)
        except (KeyError, IndexError, TypeError) as e:
            raise KerasImportError(f"{path}: its model_config lacks what a Keras functional model holds "
                                   f"({type(e).__name__}: {e}); save the model from Keras again") from None
        model = UNet(**unet)
        group = f["model_weights"] if "model_weights" in f else f
        for key, layer in names.items():
            kernel, bias = _read_layer_weights(group, layer, path)
            _assign(model, key, kernel, bias, swapped.get(key), path)
        if "minunet_metadata" in f.attrs:             # written by save below; Keras ignores it
            model.metadata = json.loads(_text(f.attrs["minunet_metadata"]))
    check_finite(model.params, path)
    return model


def load_weights(model, path):
    """Load a Keras 3 weights-only file (``.weights.h5``) into a UNet of the same
    configuration: convolutions are matched in creation order (conv2d, conv2d_1, ...)."""
    with open_read(path) as f:
        if "layers" not in f:
            raise KerasImportError(f"{path}: not a Keras 3 .weights.h5 file (no /layers group)")
        groups = {}
        for name, g in f["layers"].items():
            if "vars" in g and "0" in g["vars"]:
                kind, _, index = name.rpartition("_")
                kind, index = (kind, int(index)) if index.isdigit() else (name, 0)
                groups.setdefault(kind, []).append((index, np.asarray(g["vars"]["0"]),
                                                    np.asarray(g["vars"]["1"]) if "1" in g["vars"] else None))
    for kind, keys in (("conv2d", [l.name for l in model.layers if type(l).__name__ == "Conv2D"]),
                       ("conv2d_transpose", [l.name for l in model.layers if type(l).__name__ == "ConvTranspose2D"])):
        found = sorted(groups.get(kind, []), key=lambda t: t[0])
        if len(found) != len(keys):
            raise KerasImportError(f"{path}: {len(found)} {kind} layers, the UNet has {len(keys)}; "
                                   f"build the UNet with the configuration the file was saved from")
        for key, (_, kernel, bias) in zip(keys, found):
            _assign(model, key, kernel, bias, None, path)
    check_finite(model.params, path)
    return model


# ------------------------------------------------------------------ writing
def _layer(cls, name, config, inbound):
    """One layer in Keras 2's spelling (which Keras 3 also reads from a legacy .h5)."""
    nodes = [[[src, 0, 0, {}] for src in inbound]] if inbound else []
    return {"class_name": cls, "config": {"name": name, "trainable": True, "dtype": "float32", **config},
            "name": name, "inbound_nodes": nodes}


def _conv_config(filters, k, activation):
    return {"filters": filters, "kernel_size": [k, k], "strides": [1, 1], "padding": "same",
            "data_format": "channels_last", "dilation_rate": [1, 1], "activation": activation, "use_bias": True}


def save(model, path, input_size=None):
    """Write ``model`` as a legacy Keras .h5 model file that Keras 3 and tf.keras load.

    The config uses the spelling both accept: Keras 2's inbound nodes and
    ``batch_input_shape``, and no ``groups`` key on Conv2DTranspose. ``input_size``
    fixes H and W in the file (None: any size, as Keras allows)."""
    cfg = model.config
    key = lambda name: name.replace("/", "_")           # noqa: E731  Keras names may not contain '/'
    layers = [{"class_name": "InputLayer", "name": "input",
               "config": {"batch_input_shape": [None, input_size, input_size, cfg["in_channels"]],
                          "dtype": "float32", "sparse": False, "ragged": False, "name": "input"},
               "inbound_nodes": []}]
    weights = {}
    prev, skips = "input", {}
    for layer in model.layers:
        name, kind = key(layer.name), type(layer).__name__
        if kind == "Conv2D":
            act = model.head_activation if layer.name == "head" else layer.activation or "linear"
            layers.append(_layer("Conv2D", name, _conv_config(layer.filters, layer.kernel_size[0], act), [prev]))
        elif kind == "MaxPool2D":
            skips[layer.name.split("/")[0]] = prev
            layers.append(_layer("MaxPooling2D", name, {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid",
                                                        "data_format": "channels_last"}, [prev]))
        elif kind == "ConvTranspose2D":
            layers.append(_layer("Conv2DTranspose", name, {**_conv_config(layer.filters, 2, "linear"), "strides": [2, 2],
                                                           "output_padding": None}, [prev]))
        elif kind == "UpSampling2D":
            layers.append(_layer("UpSampling2D", name, {"size": [2, 2], "data_format": "channels_last",
                                                        "interpolation": "nearest"}, [prev]))
        elif kind == "Concatenate":
            level = "enc" + layer.name.split("/")[0][3:]
            layers.append(_layer("Concatenate", name, {"axis": -1}, [prev, skips[level]]))
        else:
            raise KerasImportError(f"cannot write layer {layer.name} ({kind}) to Keras")
        if layer.params:
            weights[name] = [to_numpy(layer.params["kernel"]).astype(np.float32),
                             to_numpy(layer.params["bias"]).astype(np.float32)]
        prev = name
    config = {"class_name": "Functional", "config": {"name": "minunet_unet", "trainable": True, "layers": layers,
                                                      "input_layers": [["input", 0, 0]], "output_layers": [[prev, 0, 0]]}}

    def write(f):
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["minunet_version"] = __version__
        if model.metadata is not None:
            f.attrs["minunet_metadata"] = json.dumps(model.metadata)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([l["name"].encode() for l in layers])
        g.attrs["backend"] = "tensorflow"
        g.attrs["keras_version"] = "2.15.0"
        for l in layers:
            lg = g.create_group(l["name"])
            names = [f"{l['name']}/{w}:0" for w in ("kernel", "bias")] if l["name"] in weights else []
            lg.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, value in zip(names, weights.get(l["name"], [])):
                lg.create_dataset(n, data=value)

    write_atomic(path, write)

"""``nnclf export``: one self-contained ONNX graph from raw feature columns to predictions.

Graph inputs, one per feature column, named after it, each of shape (N,) (N dynamic):

- numeric column: float64 (double), NaN for a missing value;
- categorical column: string, nnclf's text key of the value (text as it is, an integral number
  as '3' (or '3.0'), a boolean as 'true'/'false' (or 'True', 'TRUE')), the empty string '' for
  a missing value.

Then, as ``Preprocessor.transform`` does it (in float64 like nnclf, then cast to the network's
float type):

    numeric:     x' = (where(isnan(x), fill, x) - center) / scale   [+ indicator isnan(x)]
    categorical: one column per training category, 1 where the key equals it; '__other__'
                 is 1 for a present key matching no named category; the missing category is
                 1 for ''; an unseen key without '__other__' gives all zeros

the network in its training dtype (float32 by default; one Gemm per layer, the hidden
activation between), and the task's head. For
classification (``_classification_head``): logits z, label index argmax z (for one binary
sigmoid unit: z > 0, as ``Loss.predict_classes``), then the loss's output on z / T (T the
calibrated temperature, 1 if none): softmax, or sigmoid with [1 - p, p] for one binary unit,
or sigmoid normalised to sum 1 for mse. Outputs ``label`` (N,) (the original label values:
int64, double, string or bool) and ``probabilities`` (N, K) in the network's dtype.

Blocks are computed in a convenient order (all numeric columns together, then each
categorical block) and the first layer's weight rows are permuted to that order instead of
permuting the features: the same products, fewer nodes.

A new task adds one head function to ``HEADS`` (the network and preprocessing are shared).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .data.preprocess import MISSING, OTHER, CategoricalColumn, NumericColumn, Preprocessor, other_spellings
from .errors import NnclfError
from .model import TrainedModel

OPSET = 19  # string Equal needs 19; onnxruntime >= 1.15 runs it on CPU
IR_VERSION = 9  # the IR of opset 19, so runtimes older than the onnx package still load the file
TOLERANCE = 1e-5
ONNX_HINT = 'nnclf export needs the onnx package: pip install ".[onnx]" (from a clone) or pip install "nnclf[onnx]"'
ORT_HINT = 'nnclf export --check needs onnxruntime: pip install ".[onnx]" (from a clone) or pip install "nnclf[onnx]"'


def _onnx():
    try:
        import onnx
    except ImportError:
        raise NnclfError(ONNX_HINT) from None
    return onnx


class _Graph:
    """A small builder over onnx.helper: constants become initializers, every node gets a
    fresh output name under 'nnclf/' (so no column name can collide with one)."""

    def __init__(self, dtype):
        onnx = _onnx()
        self.dtype = np.dtype(dtype)  # the network's float type (the checkpoint's training.dtype)
        self.helper, self.numpy_helper, self.TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = 0
        self.float = onnx.helper.np_dtype_to_tensor_dtype(self.dtype)

    def scalar(self, value: float, hint: str = "c") -> str:
        return self.const(self.dtype.type(value), hint)

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"nnclf/{hint}_{self._count}"

    def const(self, value, hint: str = "c") -> str:
        array = np.asarray(value)
        if array.dtype.kind in "UO":
            array = np.array(array.tolist(), dtype=object)
        name = self._name(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, output: str | None = None, **attrs) -> str:
        out = output or self._name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def input(self, name: str, elem_type, shape) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, elem_type, shape) -> None:
        self.outputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, doc: str):
        graph = self.helper.make_graph(self.nodes, "nnclf", self.inputs, self.outputs, self.initializers)
        model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)], producer_name="nnclf", doc_string=doc)
        model.ir_version = IR_VERSION
        return model


# -- preprocessing ------------------------------------------------------------------------------
def _preprocessing(g: _Graph, pre: Preprocessor) -> tuple[str, list[int]]:
    """Graph inputs and the (N, d) feature matrix (the network's float type); returns its name and, for each of
    its columns, the column of ``Preprocessor.transform``'s layout it holds."""
    T = g.TensorProto
    layout, j = {}, 0
    for c in pre.columns:
        layout[c.name] = j
        j += c.width
    blocks, order = [], []
    one = g.const(np.array([1], dtype=np.int64), "axis1")
    numeric = [c for c in pre.columns if isinstance(c, NumericColumn)]
    if numeric:
        columns = [g.op("Unsqueeze", g.input(c.name, T.DOUBLE, ["N"]), one, hint="column") for c in numeric]
        x = g.op("Concat", *columns, axis=1, hint="numeric") if len(columns) > 1 else columns[0]
        nan = g.op("IsNaN", x)
        x = g.op("Where", nan, g.const(np.array([[c.fill for c in numeric]]), "fill"), x)
        x = g.op("Sub", x, g.const(np.array([[c.center for c in numeric]]), "center"))
        x = g.op("Div", x, g.const(np.array([[c.scale for c in numeric]]), "scale"))
        blocks.append(g.op("Cast", x, to=g.float, hint="scaled"))
        order += [layout[c.name] for c in numeric]
        flagged = [k for k, c in enumerate(numeric) if c.indicator]
        if flagged:
            picked = g.op("Gather", nan, g.const(np.array(flagged, dtype=np.int64), "flagged"), axis=1)
            blocks.append(g.op("Cast", picked, to=g.float, hint="indicator"))
            order += [layout[numeric[k].name] + 1 for k in flagged]
    for c in pre.columns:
        if not isinstance(c, CategoricalColumn):
            continue
        categories = c.categories
        named = [k for k in categories if k is not MISSING and k != OTHER]
        if "" in named:
            raise NnclfError(f"column '{c.name}': the category '' cannot be told apart from a missing value in the ONNX graph")
        keys = g.op("Unsqueeze", g.input(c.name, T.STRING, ["N"]), one, hint="column")
        base = layout[c.name]
        missing = g.op("Equal", keys, g.const(np.array([[""]], dtype=object), "empty"), hint="missing")
        if named:
            hits = g.op("Equal", keys, g.const(np.array([named], dtype=object), "categories"))
            for spelled in other_spellings(named):
                hits = g.op("Or", hits, g.op("Equal", keys, g.const(np.array([spelled], dtype=object), "categories")))
            hits = g.op("Cast", hits, to=g.float, hint="onehot")
            blocks.append(hits)
            order += [base + categories.index(k) for k in named]
        if OTHER in categories:
            # present and matching no named category (a value never seen in training)
            if named:
                none = g.op("Not", g.op("Cast", g.op("ReduceMax", hits, one, keepdims=1), to=T.BOOL))
            else:  # every category was folded: any present key is '__other__'
                none = g.op("Equal", keys, keys)
            other = g.op("And", none, g.op("Not", missing))
            blocks.append(g.op("Cast", other, to=g.float, hint="other"))
            order.append(base + categories.index(OTHER))
        if MISSING in categories:
            blocks.append(g.op("Cast", missing, to=g.float, hint="missing"))
            order.append(base + categories.index(MISSING))
    features = g.op("Concat", *blocks, axis=1, hint="features") if len(blocks) > 1 else blocks[0]
    return features, order


# -- the network ---------------------------------------------------------------------------------
def _gelu(g: _Graph, z: str) -> str:
    """z (1 + tanh(c (z + 0.044715 z^3))) / 2, c = sqrt(2/pi): the tanh form nnclf trains with."""
    cube = g.op("Mul", g.op("Mul", z, z), z)
    inner = g.op("Add", z, g.op("Mul", cube, g.scalar(0.044715)))
    t = g.op("Tanh", g.op("Mul", inner, g.scalar(math.sqrt(2.0 / math.pi))))
    return g.op("Mul", z, g.op("Mul", g.op("Add", t, g.scalar(1.0)), g.scalar(0.5)), hint="gelu")


ACTIVATIONS: dict[str, Callable[[_Graph, str], str]] = {
    "identity": lambda g, z: z,
    "sigmoid": lambda g, z: g.op("Sigmoid", z),
    "tanh": lambda g, z: g.op("Tanh", z),
    "relu": lambda g, z: g.op("Relu", z),
    "leaky_relu": lambda g, z: g.op("LeakyRelu", z, alpha=0.01),
    "elu": lambda g, z: g.op("Elu", z, alpha=1.0),
    "softplus": lambda g, z: g.op("Softplus", z),
    "gelu": _gelu,
}


def _network(g: _Graph, model: TrainedModel, x: str, order: list[int]) -> str:
    """Logits (N, K_out): Gemm per layer, the first layer's weight rows in feature ``order``."""
    net = model.net
    activation = ACTIVATIONS.get(net.activation.name)
    if activation is None:  # a new activation in the engine needs its ONNX form here too
        raise NnclfError(f"activation '{net.activation.name}' has no ONNX form in nnclf export yet")
    h = x
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        w = np.array(w)
        if l == 0:
            w = w[order]
        h = g.op("Gemm", h, g.const(w, f"W{l + 1}"), g.const(np.array(b), f"b{l + 1}"), hint=f"z{l + 1}")
        if l < net.n_layers - 1:
            h = activation(g, h)
    return h


# -- heads ---------------------------------------------------------------------------------------
def _label_tensor(values: list):
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([str(v) for v in values], dtype=object)


def _classification_head(g: _Graph, model: TrainedModel, z: str, x: str) -> None:
    T = g.TensorProto
    loss = model.loss
    binary_unit = loss.n_outputs == 1
    if binary_unit:  # one sigmoid unit: class 1 iff z > 0
        positive = g.op("Greater", z, g.scalar(0.0))
        index = g.op("Squeeze", g.op("Cast", positive, to=T.INT64), g.const(np.array([1], dtype=np.int64)), hint="index")
    else:
        index = g.op("ArgMax", z, axis=1, keepdims=0, hint="index")
    labels = _label_tensor(model.labels.values)
    g.op("Gather", g.const(labels, "labels"), index, axis=0, output="label")
    g.output("label", g.helper.np_dtype_to_tensor_dtype(labels.dtype) if labels.dtype != object else T.STRING, ["N"])
    if model.temperature != 1.0:
        z = g.op("Div", z, g.scalar(model.temperature, "temperature"), hint="tempered")
    if loss.name == "mse":  # sigmoid outputs normalised to sum 1
        h = g.op("Sigmoid", z)
        g.op("Div", h, g.op("ReduceSum", h, g.const(np.array([1], dtype=np.int64)), keepdims=1), output="probabilities")
    elif binary_unit:
        p1 = g.op("Sigmoid", z, hint="p1")
        g.op("Concat", g.op("Sub", g.scalar(1.0), p1, hint="p0"), p1, axis=1, output="probabilities")
    else:
        g.op("Softmax", z, axis=1, output="probabilities")
    g.output("probabilities", g.float, ["N", len(model.labels)])


def _regression_head(g: _Graph, model: TrainedModel, z: str, x: str) -> None:
    """``prediction`` (N, m) double in the targets' units: z * scale + center (as Targets.decode)."""
    T = g.TensorProto
    targets = model.targets
    scaled = g.op("Mul", g.op("Cast", z, to=T.DOUBLE), g.const(np.array([targets.scale], dtype=np.float64), "target_scale"))
    g.op("Add", scaled, g.const(np.array([targets.center], dtype=np.float64), "target_center"), output="prediction")
    g.output("prediction", T.DOUBLE, ["N", len(targets.names)])


def _reconstruction_head(g: _Graph, model: TrainedModel, z: str, x: str) -> None:
    """``reconstruction_error`` (N,) double: the mean over the preprocessed input columns of
    (x_hat - x)^2, the difference in the network's dtype and its square in float64 (as predict)."""
    T = g.TensorProto
    difference = g.op("Cast", g.op("Sub", z, x), to=T.DOUBLE)
    squared = g.op("Mul", difference, difference)
    g.op("ReduceMean", squared, g.const(np.array([1], dtype=np.int64)), keepdims=0, output="reconstruction_error")
    g.output("reconstruction_error", T.DOUBLE, ["N"])


# each head gets the logits z (N, K_out) and the features x (N, d) in Preprocessor.transform's order
HEADS: dict[str, Callable[[_Graph, TrainedModel, str, str], None]] = {
    "classification": _classification_head, "regression": _regression_head, "reconstruction": _reconstruction_head,
}
OUTPUTS = {"classification": ("label", "probabilities"), "regression": ("prediction",), "reconstruction": ("reconstruction_error",)}


def build_onnx(model: TrainedModel, features_output: bool = False):
    """The ONNX ModelProto of ``model`` (checked with onnx.checker). With ``features_output``
    the graph also outputs ``features``, the preprocessed matrix in ``Preprocessor.transform``'s
    column order (for tests and debugging)."""
    onnx = _onnx()
    task = getattr(model, "task", "classification")
    if task not in HEADS:
        raise NnclfError(f"{model.path}: nnclf export does not handle task '{task}' yet")
    clash = sorted(set(model.preprocessor.features) & set(OUTPUTS[task]))
    if clash:
        raise NnclfError(f"{model.path}: feature column '{clash[0]}' has the name of an ONNX output ({', '.join(OUTPUTS[task])}); rename it to export")
    g = _Graph(model.net.dtype)
    features, order = _preprocessing(g, model.preprocessor)
    if sorted(order) != list(range(model.preprocessor.n_outputs)):  # a new preprocessing step without its ONNX form
        raise NnclfError(f"{model.path}: the preprocessing has a step nnclf export cannot write yet")
    in_order = None  # the features in Preprocessor.transform's column order, where needed
    if features_output or task == "reconstruction":
        inverse = np.argsort(np.array(order, dtype=np.int64))
        in_order = g.op("Gather", features, g.const(inverse, "layout"), axis=1, output="features" if features_output else None, hint="features")
    if features_output:
        g.output("features", g.float, ["N", len(order)])
    z = _network(g, model, features, order)
    HEADS[task](g, model, z, in_order)
    doc = f"nnclf {task} model from {model.path.name}; inputs: one per feature column (double with NaN for missing, or string keys with '' for missing)"
    proto = g.model(doc)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(run, output: Optional[str | Path], which: str = "best", overwrite: bool = False, inputs: tuple = ()) -> Path:
    """Write the ONNX file of a run's checkpoint (default RUN/model.onnx); returns its path.
    An output that is the checkpoint or one of ``inputs`` (also through a link) is refused."""
    from .files import check_not_input, write_file
    from .predict import checkpoint_path

    path = checkpoint_path(run, which)
    if output is None:
        output = Path(run) / "model.onnx" if Path(run).is_dir() else path.with_suffix(".onnx")
    output = Path(output)
    check_not_input(output, [path, *inputs])  # --overwrite replaces an old export, never an input
    if output.exists() and not output.is_file():
        raise NnclfError(f"{output}: not a regular file; nothing was written")
    if output.exists() and not overwrite:
        raise NnclfError(f"{output}: already exists; pass --overwrite to replace it (nothing was written)")
    if not output.parent.is_dir():
        raise NnclfError(f"{output}: folder {output.parent} does not exist")
    payload = build_onnx(TrainedModel.load(path)).SerializeToString()
    write_file(output, lambda f: f.write(payload), inputs=[path, *inputs])
    return output


# -- checking against nnclf predict ----------------------------------------------------------------
def onnx_feeds(model: TrainedModel, frame, source: str) -> dict[str, np.ndarray]:
    """The graph's inputs for a DataFrame: numeric columns as float64 (NaN for missing; a
    non-numeric cell is the error predict gives), categorical ones as nnclf's text keys ('' for
    missing)."""
    from .data.preprocess import _as_float, category_keys

    missing = [name for name in model.preprocessor.features if name not in frame.columns]
    if missing:
        raise NnclfError(f"{source}: missing feature column '{missing[0]}' (the model was trained with it)")
    feeds = {}
    for c in model.preprocessor.columns:
        series = frame[c.name]
        if isinstance(c, NumericColumn):
            feeds[c.name] = _as_float(series, c.name, source)
        else:
            keys = category_keys(series)
            keys[[k is None for k in keys]] = ""
            feeds[c.name] = keys.astype(object)
    return feeds


def session(payload: bytes):
    """An onnxruntime CPU session on one thread (the check must not fight other work for cores)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise NnclfError(ORT_HINT) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def check(run, data, which: str = "best", output: Optional[str | Path] = None, overwrite: bool = False,
          chunk_rows: int = 100_000, warn: Callable[[str], None] = lambda m: None) -> dict:
    """Build the graph (and write it if ``output``), run it in onnxruntime on DATA and compare
    with nnclf's own predictions. ``max_abs_diff`` is the largest difference of: the class
    probabilities (classification), the predictions divided by their target's scale, i.e. in
    the network's output units (regression: a prediction of 150 in float32 carries ~1e-5 of
    rounding), the reconstruction errors (reconstruction). Classification also counts the rows
    whose labels differ where nnclf's two most probable classes are more than TOLERANCE apart."""
    from .data.preprocess import TransformNotes
    from .data.reading import iter_table
    from .predict import _finite_outputs, _finite_predict, checkpoint_path

    path = checkpoint_path(run, which)
    model = TrainedModel.load(path)
    task = getattr(model, "task", "classification")
    written = export(run, output, which, overwrite, inputs=(data,)) if output is not None else None
    payload = written.read_bytes() if written is not None else build_onnx(model).SerializeToString()
    sess = session(payload)
    cfg = model.meta["config"]["data"]
    worst, worst_row, largest, rows, mismatched, notes = 0.0, None, 0.0, 0, 0, TransformNotes()
    for frame in iter_table(data, cfg["encoding"], cfg.get("delimiter"), chunk_rows=chunk_rows):
        x = model.features(frame, str(data), warn, notes)
        feeds = onnx_feeds(model, frame, str(data))
        if task == "classification":
            classes, ours = _finite_predict(model, x, frame, str(data))
            labels, theirs = sess.run(["label", "probabilities"], feeds)
            top2 = np.sort(ours, axis=1)[:, -2:]
            clear = (top2[:, 1] - top2[:, 0]) > TOLERANCE
            decoded = model.labels.decode(classes).tolist()
            mismatched += sum(1 for a, b, c in zip(decoded, np.asarray(labels).tolist(), clear) if c and _label_key(a) != _label_key(b))
            scale = 1.0
        elif task == "regression":
            ours = _finite_outputs(model, x, frame, str(data))
            (theirs,) = sess.run(["prediction"], feeds)
            scale = model.targets.scale
        else:
            ours = np.square(_finite_outputs(model, x, frame, str(data)) - x, dtype=np.float64).mean(axis=1)[:, None]
            (theirs,) = sess.run(["reconstruction_error"], feeds)
            theirs, scale = np.asarray(theirs)[:, None], 1.0
        raw = np.abs(np.asarray(theirs, np.float64) - np.asarray(ours, np.float64))
        diff = (raw / scale).max(axis=1) if len(frame) else np.zeros(0)
        if len(diff) and diff.max() > worst:
            worst, worst_row = float(diff.max()), int(frame.index[int(diff.argmax())]) + 2
        largest = max(largest, float(raw.max())) if raw.size else largest
        rows += len(frame)
    notes.emit(warn, str(data))
    return {"task": task, "rows": rows, "max_abs_diff": worst, "max_raw_diff": largest, "worst_line": worst_row,
            "label_mismatches": mismatched, "tolerance": TOLERANCE, "ok": worst <= TOLERANCE and mismatched == 0,
            "checkpoint": str(path), "output": str(written) if written else None}


def _label_key(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)

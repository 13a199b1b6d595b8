"""Ensembles (model fusion): several models run on the same input as one model, their outputs combined by the
mean of probabilities, a weighted mean, or a vote.

Where every member is ONNX, or PyTorch (exported, with the export's numeric check), the ensemble is built as one
ONNX graph: the members side by side on the shared inputs, then the combination, so one engine call replaces N
and the runtime may schedule them together. Anything else (an OpenVINO IR member) runs as a composite engine that
calls each member's session and combines in numpy, which is also what the fused graph is checked against.

An ensemble is written as a YAML file:

    ensemble:
      members: [digits-cnn, runs/pruned, student.onnx]   # any model specs
      combine: mean            # mean (of probabilities), weighted (needs weights), vote
      weights: [0.5, 0.3, 0.2] # weighted only
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infertune.errors import ConfigError, UnsupportedModelError

COMBINES = ("mean", "weighted", "vote")
OUTPUTS = {"mean": "probabilities", "weighted": "probabilities", "vote": "votes"}
CHECK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class EnsembleSpec:
    members: tuple[str, ...]
    combine: str = "mean"
    weights: tuple[float, ...] | None = None
    name: str = "ensemble"

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ConfigError(f"an ensemble needs at least two members, got {len(self.members)}: list them under "
                              f"ensemble.members")
        if self.combine not in COMBINES:
            raise ConfigError(f"ensemble.combine must be one of {', '.join(COMBINES)}, got '{self.combine}'")
        if self.combine == "weighted":
            if self.weights is None or len(self.weights) != len(self.members):
                raise ConfigError(f"ensemble.weights must give one weight per member ({len(self.members)}) for "
                                  f"combine: weighted, got {list(self.weights or [])}")
            if any(not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 for w in self.weights) \
                    or sum(self.weights) <= 0:
                raise ConfigError(f"ensemble.weights must be non-negative numbers, not all 0, got {list(self.weights)}")
        elif self.weights is not None:
            raise ConfigError(f"ensemble.weights apply to combine: weighted only, not '{self.combine}'")

    @property
    def normalized_weights(self) -> list[float]:
        weights = self.weights or (1.0,) * len(self.members)
        return [w / sum(weights) for w in weights]


def is_ensemble_file(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) and Path(spec).is_file()


def read_spec(path: str | os.PathLike) -> EnsembleSpec:
    """The ensemble a YAML file describes; a file that does not describe one exits 2 naming the field."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read ensemble file '{path}': {e}") from e
    body = data.get("ensemble") if isinstance(data, dict) else None
    if not isinstance(body, dict):
        raise ConfigError(f"'{path}' is not an ensemble file: it needs a top-level 'ensemble:' mapping with "
                          f"'members' (a list of model specs) and 'combine' ({', '.join(COMBINES)})")
    unknown = set(body) - {"members", "combine", "weights", "name"}
    if unknown:
        raise ConfigError(f"ensemble file '{path}' has unknown field '{sorted(unknown)[0]}': the fields are members, "
                          f"combine, weights, name")
    members = body.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
        raise ConfigError(f"ensemble.members in '{path}' must be a list of model specs, got {members!r}")
    base = path.parent
    resolved = tuple(m if not (base / m).exists() else str(base / m) for m in members)  # relative to the file
    weights = body.get("weights")
    return EnsembleSpec(members=resolved, combine=body.get("combine", "mean"),
                        weights=tuple(weights) if isinstance(weights, list) else weights,
                        name=str(body.get("name") or path.stem))


def build(spec: EnsembleSpec, members: list, *, model_spec=None, workdir: str | os.PathLike | None = None):
    """One Model for the ensemble of `members` (loaded Models, in the spec's order): a fused ONNX graph.
    `model_spec`: how another process gets it back (the ensemble file's ModelSpec)."""
    from infertune.model.base import Model
    from infertune.model.signature import Signature, TensorSpec
    from infertune.model.spec import ModelSpec

    _check_members(spec, members)
    first = members[0]
    classes = first.signature.outputs[0].shape[-1]
    if spec.combine == "vote" and first.task != "classification":
        raise ConfigError(f"ensemble.combine: vote needs class scores; '{first.name}' is a {first.task} model: use "
                          f"mean or weighted")
    paths = [_onnx_of(m, workdir) for m in members]
    output = OUTPUTS[spec.combine] if first.task == "classification" else "output"
    digest = hashlib.blake2b(digest_size=12)
    for path in paths:
        digest.update(Path(path).read_bytes())
    digest.update(repr((spec.combine, spec.normalized_weights, first.task)).encode())
    root = Path(workdir) if workdir is not None else _cache_dir()
    target = root / f"ensemble-{digest.hexdigest()}" / "model.onnx"
    if not target.is_file():
        fuse(paths, spec, output=output, classify=first.task == "classification", classes=classes, out=target)
    signature = Signature(inputs=first.signature.inputs,
                          outputs=(TensorSpec(output, "float32", first.signature.outputs[0].shape),))
    model = Model(name=spec.name, spec=model_spec or ModelSpec(model=spec.name), signature=signature,
                  task=first.task, onnx_path=target,
                  default_data=first.default_data, encode_texts=first.encode_texts,
                  meta={"ensemble": {"members": [m.name for m in members], "combine": spec.combine,
                                     "weights": spec.normalized_weights}})
    _check_against_members(model, members, spec)
    return model


def fuse(paths: list[Path], spec: EnsembleSpec, *, output: str, classify: bool, classes: int, out: Path) -> Path:
    """Write one ONNX graph: each member's graph (prefixed m0_, m1_, ...) on the shared inputs, then the
    combination of their first outputs. Members are brought to the highest opset among them."""
    import onnx
    from onnx import TensorProto, compose, helper, version_converter

    loaded = [onnx.load(str(p)) for p in paths]
    opset = max(_opset(m) for m in loaded)
    graphs, initializers, nodes = [], [], []
    for i, member in enumerate(loaded):
        if _opset(member) != opset:
            member = version_converter.convert_version(member, opset)
        member = compose.add_prefix(member, prefix=f"m{i}_", rename_inputs=False)
        graphs.append(member.graph)
        nodes.extend(member.graph.node)
        initializers.extend(member.graph.initializer)
    combined, weights = [], spec.normalized_weights
    for i, graph in enumerate(graphs):
        scores = graph.output[0].name
        if spec.combine == "vote":
            nodes += [helper.make_node("ArgMax", [scores], [f"vote{i}_class"], axis=-1, keepdims=0),
                      helper.make_node("OneHot", [f"vote{i}_class", "vote_depth", "vote_values"], [f"vote{i}"],
                                       axis=-1)]
            combined.append(f"vote{i}")
            continue
        value = scores
        if classify:
            nodes.append(helper.make_node("Softmax", [scores], [f"p{i}"], axis=-1))
            value = f"p{i}"
        initializers.append(helper.make_tensor(f"w{i}", TensorProto.FLOAT, [], [weights[i]]))
        nodes.append(helper.make_node("Mul", [value, f"w{i}"], [f"weighted{i}"]))
        combined.append(f"weighted{i}")
    if spec.combine == "vote":
        initializers += [helper.make_tensor("vote_depth", TensorProto.INT64, [], [classes]),
                         helper.make_tensor("vote_values", TensorProto.FLOAT, [2], [0.0, 1.0])]
    nodes.append(helper.make_node("Sum", combined, [output]))
    first_output = graphs[0].output[0]
    result = helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                           [d.dim_param or d.dim_value for d in first_output.type.tensor_type.shape.dim])
    graph = helper.make_graph(nodes, spec.name, list(graphs[0].input), [result], initializer=initializers)
    domains = {}
    for member in loaded:
        for entry in member.opset_import:
            domains[entry.domain] = max(domains.get(entry.domain, 0), entry.version)
    domains[""] = opset
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains.items()],
                              producer_name="infertune-ensemble")
    model.ir_version = max(m.ir_version for m in loaded)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    onnx.save(model, str(staging))
    os.replace(staging, out)
    return out


class CompositeSession:
    """The members' sessions called one after another and combined in numpy: the fallback for members that are
    not ONNX or PyTorch, and the reference the fused graph is checked against."""

    backend = "composite"

    def __init__(self, sessions: list, spec: EnsembleSpec, *, classify: bool, output: str):
        self.sessions, self.spec, self.classify, self.output = sessions, spec, classify, output
        self.precision = "+".join(sorted({s.precision for s in sessions}))
        self.artifact_bytes = sum(s.artifact_bytes for s in sessions)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = [next(iter(s.run(inputs).values())) for s in self.sessions]
        return {self.output: combine(scores, self.spec, classify=self.classify)}


def combine(scores: list[np.ndarray], spec: EnsembleSpec, *, classify: bool) -> np.ndarray:
    if spec.combine == "vote":
        classes = scores[0].shape[-1]
        return sum(np.eye(classes, dtype=np.float32)[s.argmax(axis=-1)] for s in scores).astype(np.float32)
    values = [_softmax(s) if classify else s for s in scores]
    return sum(w * v for w, v in zip(spec.normalized_weights, values)).astype(np.float32)


def composite(spec: EnsembleSpec, members: list, backends: list[str], options: list[dict]) -> CompositeSession:
    from infertune.backends import load_session

    _check_members(spec, members)
    first = members[0]
    sessions = [load_session(m, b, **o) for m, b, o in zip(members, backends, options)]
    return CompositeSession(sessions, spec, classify=first.task == "classification",
                            output=OUTPUTS[spec.combine] if first.task == "classification" else "output")


# -- checks ---------------------------------------------------------------------------------------------------


def _check_members(spec: EnsembleSpec, members: list) -> None:
    first = members[0]
    inputs = [(s.name, s.dtype, len(s.shape)) for s in first.signature.inputs]
    for member, source in zip(members[1:], spec.members[1:]):
        theirs = [(s.name, s.dtype, len(s.shape)) for s in member.signature.inputs]
        if theirs != inputs:
            raise ConfigError(f"ensemble member '{source}' takes {member.signature.describe_inputs()}, the first "
                              f"member {first.signature.describe_inputs()}: every member must take the same inputs")
        if member.signature.outputs[0].shape[1:] != first.signature.outputs[0].shape[1:]:
            raise ConfigError(f"ensemble member '{source}' answers {list(member.signature.outputs[0].shape)}, the "
                              f"first member {list(first.signature.outputs[0].shape)}: their first outputs must match")
        if member.task != first.task:
            raise ConfigError(f"ensemble member '{source}' is a {member.task} model, the first a {first.task} one")


def _onnx_of(model, workdir) -> Path:
    if model.format == "onnx":
        return Path(model.onnx_path)
    if model.format == "torch":
        from infertune.passes.export import export_onnx

        return Path(export_onnx(model).onnx_path)
    raise UnsupportedModelError(f"ensemble member '{model.name}' is an OpenVINO IR: it cannot join a fused ONNX graph; "
                                f"run the ensemble as a composite engine (infertune.ensemble.composite)")


def _check_against_members(model, members: list, spec: EnsembleSpec) -> None:
    """The fused graph's outputs against the members run one by one and combined in numpy, as an export is
    checked against its source: a fusion that changes the numbers fails loudly."""
    from infertune.backends import load_session
    from infertune.errors import ExportError

    inputs = members[0].example_inputs(batch_size=3)
    fused = load_session(model, "onnxruntime").run(inputs)[model.signature.outputs[0].name]
    sessions = [load_session(m, "onnxruntime") for m in members]
    expected = CompositeSession(sessions, spec, classify=model.task == "classification",
                                output=model.signature.outputs[0].name).run(inputs)[model.signature.outputs[0].name]
    worst = float(np.abs(fused - expected).max())
    if not np.isfinite(worst) or worst > CHECK_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise ExportError(f"the fused ensemble graph differs from its members combined one by one by up to {worst:.3g}")


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _cache_dir() -> Path:
    root = os.environ.get("INFERTUNE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "infertune")
    return Path(root) / "ensembles"

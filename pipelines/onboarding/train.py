"""The onboarding models, made the way their owners make them: a seeded random purpose
encoder (a model folder), an XGBoost booster saved natively, and a logistic PD model written
as an ONNX graph.

Builder-only (not copied into the workspace). The builder feeds these the matrices made by
the workspace's own feature code, so models are trained with the code that will serve them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import xgboost
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression

HIDDEN = 64  # width of the word embeddings, before the projection to the purpose vector
UNKNOWN = "[UNK]"
ONNX_OPSET = 17  # onnxruntime 1.16 and later run it
ONNX_IR_VERSION = 8  # the IR of opset 17; newer onnx writes a newer IR older runtimes refuse
RISK_PARAMS = {
    "objective": "binary:logistic",
    "max_depth": 3,
    "eta": 0.1,
    "subsample": 1.0,
    "min_child_weight": 2.0,
    "nthread": 1,
}  # one thread: bit-identical retrains
RISK_ROUNDS = 60


def write_encoder(folder: Path, words: list[str], dim: int, seed: int) -> None:
    """A purpose encoder with a seeded random embedding and projection, as a model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [UNKNOWN, *words]
    rng = np.random.default_rng((seed, 0xE3C))
    embedding = rng.normal(0, 1 / np.sqrt(HIDDEN), (len(vocab), HIDDEN)).astype(np.float32)
    projection = rng.normal(0, 1 / np.sqrt(dim), (HIDDEN, dim)).astype(np.float32)
    config = {
        "dim": dim,
        "hidden": HIDDEN,
        "vocab_size": len(vocab),
        "unknown": UNKNOWN,
        "pooling": "mean",
        "normalize": "l2",
        "tokenizer": "lowercase-alphanumeric",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    save_file({"embedding": embedding, "projection": projection}, str(folder / "model.safetensors"))


def fit_risk(
    features: np.ndarray, labels: np.ndarray, names: tuple[str, ...], seed: int
) -> xgboost.Booster:
    """The risk booster on the risk matrix (NaN = no balance history)."""
    data = xgboost.DMatrix(features, label=labels.astype(np.float32), feature_names=list(names))
    return xgboost.train({**RISK_PARAMS, "seed": seed}, data, num_boost_round=RISK_ROUNDS)


def pd_graph(features: np.ndarray, labels: np.ndarray, seed: int) -> onnx.ModelProto:
    """Logistic regression on standardised PD features, as the ONNX graph
    sigmoid(((x - mean) * inv_std) @ W + b)."""
    mean = features.mean(axis=0).astype(np.float32)
    inv_std = (1 / np.maximum(features.std(axis=0), 1e-6)).astype(np.float32)
    model = LogisticRegression(C=0.5, max_iter=1_000, random_state=seed)
    model.fit((features - mean) * inv_std, labels)
    weights = model.coef_.T.astype(np.float32)  # (features, 1)
    bias = model.intercept_.astype(np.float32)  # (1,)
    width = features.shape[1]
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["features", "mean"], ["centred"]),
            helper.make_node("Mul", ["centred", "inv_std"], ["scaled"]),
            helper.make_node("MatMul", ["scaled", "weights"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["pd"]),
        ],
        "probability_of_default",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["rows", width])],
        [helper.make_tensor_value_info("pd", TensorProto.FLOAT, ["rows", 1])],
        [
            numpy_helper.from_array(mean, "mean"),
            numpy_helper.from_array(inv_std, "inv_std"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="onboarding-builder",
        ir_version=ONNX_IR_VERSION,
    )
    onnx.checker.check_model(proto)
    return proto

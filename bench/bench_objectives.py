"""Objectives for the benchmarks (importable by Ray workers through PYTHONPATH), and the problem set
of ``bench/bench_bo.py``.

``PROBLEMS`` (25): synthetic functions of 2 to 20 inputs with known optima, two mixed/categorical
synthetic functions with known optima, two with failures in part of the space (one returns NaN,
one raises), and twelve scikit-learn tuning problems on data that ship with scikit-learn (3-fold
cross-validated loss, one thread, data subsampled and ensembles small so that one evaluation takes
tens of milliseconds). Every import of scikit-learn is lazy, so ``noop`` stays cheap to import.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from search.space import CategoricalParam, FloatParam, IntParam, Space


def noop(config):
    return 0.0


@dataclass
class Problem:
    name: str
    space: Space
    fn: Callable[[dict[str, Any]], float]
    optimum: float | None  # None: best seen in the benchmark's runs
    kind: str = "synthetic"  # "synthetic", "mixed", "failures" or "sklearn"


# -- synthetic functions ---------------------------------------------------------------------
def _vec(config: dict[str, Any], d: int) -> np.ndarray:
    return np.array([config[f"x{i}"] for i in range(d)], dtype=float)


def _box(d: int, lo: float, hi: float) -> Space:
    return Space.of([FloatParam(f"x{i}", lo, hi) for i in range(d)])


def branin(c):
    x1, x2 = c["x0"], c["x1"]
    return ((x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def six_hump_camel(c):
    x, y = c["x0"], c["x1"]
    return (4 - 2.1 * x ** 2 + x ** 4 / 3) * x ** 2 + x * y + (-4 + 4 * y ** 2) * y ** 2


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(c):
    x = _vec(c, 6)
    return float(-(_H_ALPHA * np.exp(-(_H_A * (x - _H_P) ** 2).sum(1))).sum())


def hartmann3(c):
    x = _vec(c, 3)
    return float(-(_H_ALPHA * np.exp(-(_H3_A * (x - _H3_P) ** 2).sum(1))).sum())


def _ackley(x: np.ndarray) -> float:
    return float(-20 * math.exp(-0.2 * math.sqrt((x ** 2).mean())) - math.exp(np.cos(2 * math.pi * x).mean())
                 + 20 + math.e)


def ackley10(c):
    return _ackley(_vec(c, 10))


def ackley20(c):
    return _ackley(_vec(c, 20))


def rosenbrock10(c):
    x = _vec(c, 10)
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def levy10(c):
    x = _vec(c, 10)
    w = 1 + (x - 1) / 4
    return float(math.sin(math.pi * w[0]) ** 2
                 + ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2)).sum()
                 + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2))


def styblinski_tang8(c):
    x = _vec(c, 8)
    return float(0.5 * (x ** 4 - 16 * x ** 2 + 5 * x).sum())


# -- mixed and categorical synthetic functions (known optima) --------------------------------------
_MQ_A = (0.5, 0.0, 1.0)
_MQ_B = (0.8, 0.3, 0.0, 0.6)
_MQ_C = (0.4, 0.2, 0.9, 0.0, 0.7)
_MQ_T = ((0.2, 0.8, 0.5), (0.7, 0.3, 0.6), (0.5, 0.5, 0.1))


def mixed_quadratic(c):
    """3 categoricals (3, 4, 5 choices), 2 integers (one log-scaled), 3 floats; the floats' and the
    first integer's best values depend on the first categorical. Minimum 0 at a=a1, b=b2, c=c3,
    x=(0.7, 0.3, 0.6), k=10, m=30."""
    a, b, cc = int(c["a"][1:]), int(c["b"][1:]), int(c["c"][1:])
    x = np.array([c["x0"], c["x1"], c["x2"]])
    return float(_MQ_A[a] + _MQ_B[b] + _MQ_C[cc] + 1.5 * _MQ_B[b] * _MQ_C[cc]
                 + 4.0 * ((x - np.array(_MQ_T[a])) ** 2).sum() + ((c["k"] - 7 - 3 * a) / 10) ** 2
                 + (math.log(c["m"]) - math.log(30)) ** 2 / 4)


_CAT_D, _CAT_K = 8, 4
_CAT_RNG = np.random.default_rng(20231)
_CAT_H = _CAT_RNG.normal(0.0, 1.0, (_CAT_D, _CAT_K))
_CAT_PAIRS = [(i, i + 1) for i in range(_CAT_D - 1)] + [(0, 4), (2, 6), (1, 5), (3, 7)]
_CAT_J = {p: _CAT_RNG.normal(0.0, 1.0, (_CAT_K, _CAT_K)) for p in _CAT_PAIRS}


def _cat_energy(Z: np.ndarray) -> np.ndarray:
    e = _CAT_H[np.arange(_CAT_D), Z].sum(-1)
    for (i, j), J in _CAT_J.items():
        e = e + J[Z[..., i], Z[..., j]]
    return e


def categorical_chain(c):
    """8 categoricals of 4 choices with pairwise interactions (a random-field energy)."""
    return float(_cat_energy(np.array([int(c[f"z{i}"][1:]) for i in range(_CAT_D)])))


def _categorical_chain_optimum() -> float:
    Z = np.array(list(itertools.product(range(_CAT_K), repeat=_CAT_D)))
    return float(_cat_energy(Z).min())


# -- failures in part of the space -----------------------------------------------------------
def branin_nan(c):
    """Branin, NaN in the quarter x0 < 2.5, x1 > 7.5 (which holds one of its three minima)."""
    if c["x0"] < 2.5 and c["x1"] > 7.5:
        return math.nan
    return branin(c)


def hartmann6_raises(c):
    """Hartmann-6 that raises where x0 + x1 > 1.2 (32% of the cube; the minimum is outside)."""
    if c["x0"] + c["x1"] > 1.2:
        raise RuntimeError("diverged")
    return hartmann6(c)


# -- scikit-learn tuning problems (3-fold CV, n_jobs=1) -----------------------------------------
_DATA: dict[str, Any] = {}


def _data(name: str):
    if name not in _DATA:
        from sklearn import datasets
        from sklearn.preprocessing import StandardScaler
        X, y = {"cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
                "diabetes": datasets.load_diabetes, "digits": datasets.load_digits,
                "iris": datasets.load_iris}[name](return_X_y=True)
        if name == "digits":  # keep fits cheap
            X, y = X[:400], y[:400]
        _DATA[name] = (StandardScaler().fit_transform(X), y)
    return _DATA[name]


def _cv(model, data: str, scoring: str) -> float:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    X, y = _data(data)
    cv = (KFold(3, shuffle=True, random_state=0) if data == "diabetes"
          else StratifiedKFold(3, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cross_val_score(model, X, y, cv=cv, scoring=scoring, n_jobs=1,
                                     error_score="raise").mean())


def svm_cancer(c):
    from sklearn.svm import SVC
    return 1 - _cv(SVC(C=c["C"], gamma=c["gamma"], tol=c["tol"]), "cancer", "accuracy")


def rf_wine(c):
    from sklearn.ensemble import RandomForestClassifier
    return 1 - _cv(RandomForestClassifier(
        n_estimators=10, max_depth=c["max_depth"], min_samples_split=c["min_samples_split"],
        min_samples_leaf=c["min_samples_leaf"], max_features=c["max_features"],
        criterion=c["criterion"], random_state=0, n_jobs=1), "wine", "accuracy")


def gb_diabetes(c):
    from sklearn.ensemble import GradientBoostingRegressor
    return -_cv(GradientBoostingRegressor(
        n_estimators=c["n_estimators"], learning_rate=c["learning_rate"], max_depth=c["max_depth"],
        subsample=c["subsample"], min_samples_leaf=c["min_samples_leaf"], random_state=0),
        "diabetes", "r2")


def mlp_digits(c):
    from sklearn.neural_network import MLPClassifier
    return 1 - _cv(MLPClassifier(
        hidden_layer_sizes=(c["width"],), alpha=c["alpha"], learning_rate_init=c["lr"],
        batch_size=c["batch_size"], max_iter=15, random_state=0), "digits", "accuracy")


def enet_diabetes(c):
    from sklearn.linear_model import ElasticNet, Lasso, Ridge
    if c["model"] == "ridge":
        model = Ridge(alpha=c["alpha"])
    elif c["model"] == "lasso":
        model = Lasso(alpha=c["alpha"], max_iter=5000)
    else:
        model = ElasticNet(alpha=c["alpha"], l1_ratio=c["l1_ratio"], max_iter=5000)
    return -_cv(model, "diabetes", "r2")


def svr_diabetes(c):
    from sklearn.svm import SVR
    return -_cv(SVR(C=c["C"], epsilon=c["epsilon"], gamma=c["gamma"], kernel=c["kernel"]),
                "diabetes", "r2")


def knn_wine(c):
    from sklearn.neighbors import KNeighborsClassifier
    return 1 - _cv(KNeighborsClassifier(n_neighbors=c["n_neighbors"], weights=c["weights"], p=c["p"]),
                   "wine", "accuracy")


def ada_cancer(c):
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.tree import DecisionTreeClassifier
    return 1 - _cv(AdaBoostClassifier(
        DecisionTreeClassifier(max_depth=c["max_depth"], random_state=0),
        n_estimators=c["n_estimators"], learning_rate=c["learning_rate"], random_state=0),
        "cancer", "accuracy")


def rf_digits(c):
    from sklearn.ensemble import RandomForestClassifier
    return 1 - _cv(RandomForestClassifier(
        n_estimators=c["n_estimators"], max_depth=c["max_depth"], max_features=c["max_features"],
        min_samples_leaf=c["min_samples_leaf"], bootstrap=c["bootstrap"] == "yes",
        criterion=c["criterion"], random_state=0, n_jobs=1), "digits", "accuracy")


def mlp_cancer(c):
    from sklearn.neural_network import MLPClassifier
    return 1 - _cv(MLPClassifier(
        hidden_layer_sizes=(c["width"],) * c["layers"], alpha=c["alpha"],
        learning_rate_init=c["lr"], activation=c["activation"], max_iter=30, random_state=0),
        "cancer", "accuracy")


def lr_cancer(c):
    from sklearn.linear_model import LogisticRegression
    return 1 - _cv(LogisticRegression(
        C=c["C"], l1_ratio=1.0 if c["penalty"] == "l1" else 0.0, solver="liblinear",
        fit_intercept=c["intercept"] == "yes",
        class_weight=None if c["class_weight"] == "none" else "balanced", max_iter=200),
        "cancer", "accuracy")


def dt_digits(c):
    from sklearn.tree import DecisionTreeClassifier
    return 1 - _cv(DecisionTreeClassifier(
        max_depth=c["max_depth"], min_samples_split=c["min_samples_split"],
        min_samples_leaf=c["min_samples_leaf"], max_features=c["max_features"],
        criterion=c["criterion"], splitter=c["splitter"], random_state=0), "digits", "accuracy")


def _problems() -> dict[str, Problem]:
    F, N, C = FloatParam, IntParam, CategoricalParam
    ps = [
        # synthetic, known optima
        Problem("branin", Space.of([F("x0", -5, 10), F("x1", 0, 15)]), branin, 0.397887),
        Problem("six_hump_camel", Space.of([F("x0", -3, 3), F("x1", -2, 2)]), six_hump_camel,
                -1.0316284535),
        Problem("hartmann3", _box(3, 0.0, 1.0), hartmann3, -3.86278),
        Problem("hartmann6", _box(6, 0.0, 1.0), hartmann6, -3.32237),
        Problem("styblinski_tang8", _box(8, -5.0, 5.0), styblinski_tang8, -39.16616570377142 * 8),
        Problem("ackley10", _box(10, -32.768, 32.768), ackley10, 0.0),
        Problem("rosenbrock10", _box(10, -5.0, 10.0), rosenbrock10, 0.0),
        Problem("levy10", _box(10, -10.0, 10.0), levy10, 0.0),
        Problem("ackley20", _box(20, -32.768, 32.768), ackley20, 0.0),
        # mixed / categorical, known optima
        Problem("mixed_quadratic", Space.of([
            C("a", ("a0", "a1", "a2")), C("b", ("b0", "b1", "b2", "b3")),
            C("c", ("c0", "c1", "c2", "c3", "c4")), N("k", 0, 20), N("m", 1, 100, log=True),
            F("x0", 0.0, 1.0), F("x1", 0.0, 1.0), F("x2", 0.0, 1.0)]), mixed_quadratic, 0.0, "mixed"),
        Problem("categorical_chain", Space.of([C(f"z{i}", tuple(f"v{k}" for k in range(_CAT_K)))
                                               for i in range(_CAT_D)]),
                categorical_chain, _categorical_chain_optimum(), "mixed"),
        # failures in part of the space
        Problem("branin_nan", Space.of([F("x0", -5, 10), F("x1", 0, 15)]), branin_nan, 0.397887,
                "failures"),
        Problem("hartmann6_raises", _box(6, 0.0, 1.0), hartmann6_raises, -3.32237, "failures"),
        # scikit-learn
        Problem("svm_cancer", Space.of([
            F("C", 1e-2, 1e3, log=True), F("gamma", 1e-5, 1.0, log=True),
            F("tol", 1e-5, 1e-1, log=True)]), svm_cancer, None, "sklearn"),
        Problem("rf_wine", Space.of([
            N("max_depth", 1, 15), F("min_samples_split", 0.01, 0.5), N("min_samples_leaf", 1, 10),
            F("max_features", 0.05, 1.0), C("criterion", ("gini", "entropy"))]), rf_wine, None, "sklearn"),
        Problem("gb_diabetes", Space.of([
            N("n_estimators", 10, 100, log=True), F("learning_rate", 1e-3, 1.0, log=True),
            N("max_depth", 1, 6), F("subsample", 0.3, 1.0), N("min_samples_leaf", 1, 40, log=True)]),
            gb_diabetes, None, "sklearn"),
        Problem("mlp_digits", Space.of([
            N("width", 8, 128, log=True), F("alpha", 1e-6, 1.0, log=True), F("lr", 1e-4, 1e-1, log=True),
            N("batch_size", 16, 256, log=True)]), mlp_digits, None, "sklearn"),
        Problem("linear_diabetes", Space.of([
            C("model", ("ridge", "lasso", "elasticnet")), F("alpha", 1e-5, 1e2, log=True),
            F("l1_ratio", 0.0, 1.0, when={"model": ("elasticnet",)})]), enet_diabetes, None, "sklearn"),
        Problem("svr_diabetes", Space.of([
            F("C", 1e-2, 1e3, log=True), F("epsilon", 1e-3, 1.0, log=True),
            F("gamma", 1e-4, 1.0, log=True), C("kernel", ("rbf", "sigmoid"))]), svr_diabetes, None,
            "sklearn"),
        Problem("knn_wine", Space.of([
            N("n_neighbors", 1, 60), C("weights", ("uniform", "distance")), N("p", 1, 2)]),
            knn_wine, None, "sklearn"),
        Problem("ada_cancer", Space.of([
            N("n_estimators", 5, 40, log=True), F("learning_rate", 1e-2, 2.0, log=True),
            N("max_depth", 1, 3)]), ada_cancer, None, "sklearn"),
        Problem("rf_digits", Space.of([
            N("n_estimators", 4, 24, log=True), N("max_depth", 2, 20), F("max_features", 0.02, 0.5, log=True),
            N("min_samples_leaf", 1, 8), C("bootstrap", ("yes", "no")), C("criterion", ("gini", "entropy"))]),
            rf_digits, None, "sklearn"),
        Problem("mlp_cancer", Space.of([
            N("width", 4, 64, log=True), N("layers", 1, 2), F("alpha", 1e-6, 1.0, log=True),
            F("lr", 1e-4, 1e-1, log=True), C("activation", ("relu", "tanh", "logistic"))]),
            mlp_cancer, None, "sklearn"),
        Problem("lr_cancer", Space.of([
            F("C", 1e-4, 1e3, log=True), C("penalty", ("l1", "l2")), C("intercept", ("yes", "no")),
            C("class_weight", ("none", "balanced"))]), lr_cancer, None, "sklearn"),
        Problem("dt_digits", Space.of([
            N("max_depth", 1, 20), N("min_samples_split", 2, 40, log=True), N("min_samples_leaf", 1, 20, log=True),
            F("max_features", 0.05, 1.0), C("criterion", ("gini", "entropy", "log_loss")),
            C("splitter", ("best", "random"))]), dt_digits, None, "sklearn"),
    ]
    return {p.name: p for p in ps}


PROBLEMS = _problems()

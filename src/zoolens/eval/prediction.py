"""Zero-shot accuracy prediction: regress a model's accuracy from its frozen embedding.

Predictions are out-of-fold: each row is predicted by a regressor that never saw it
(nor, when `groups` are given, any row of its group, e.g. its task). Metrics are then
computed once over all out-of-fold predictions.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import kendalltau, spearmanr
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from zoolens.eval._checks import as_labels, as_matrix, as_vector, label_codes

Regressor = Literal["ridge", "mlp"]
FOLDS = 5  # outer folds, and ridge's inner ones
RIDGE_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 3, 13))
MLP_ALPHAS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
MLP_COMPONENTS = 64  # principal components the MLP reads (fewer when the fold is smaller)
MLP_HIDDEN = 64  # ReLU units of its one hidden layer
MLP_INNER_FOLDS = 3  # its weight-decay search fits len(MLP_ALPHAS) x 3 + 1 times per outer fold


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """R², MSE, Spearman ρ and Kendall τ (τ-b) of predictions against true values.

    Args:
        y_true: (n,) true values.
        y_pred: (n,) predicted values.

    Returns:
        ``{"R2", "MSE", "spearman", "kendall_tau"}``. R² is NaN when `y_true` is
        constant; the rank correlations are NaN when either input is constant.
    """
    t = as_vector(y_true, "y_true")
    p = as_vector(y_pred, "y_pred", t.shape[0])
    if t.shape[0] < 2:
        raise ValueError(f"regression metrics need at least 2 values; got {t.shape[0]}")
    sse = float(np.sum((t - p) ** 2))
    sst = float(np.sum((t - t.mean()) ** 2))
    constant = np.ptp(t) == 0 or np.ptp(p) == 0
    return {
        "R2": 1.0 - sse / sst if sst > 0 else float("nan"),
        "MSE": sse / t.shape[0],
        "spearman": float("nan") if constant else float(spearmanr(t, p).statistic),
        "kendall_tau": float("nan") if constant else float(kendalltau(t, p).statistic),
    }


def predict_out_of_fold(
    embeddings: ArrayLike,
    targets: ArrayLike,
    groups: ArrayLike | None = None,
    model: Regressor = "ridge",
    folds: int = FOLDS,
    seed: int = 0,
) -> np.ndarray:
    """Cross-validated predictions of `targets` from `embeddings`, each row predicted out of fold.

    Args:
        embeddings: (n, d) frozen embeddings.
        targets: (n,) values to predict (e.g. test accuracy).
        groups: (n,) group of each row (e.g. task); folds never split a group
            (GroupKFold). None splits rows at random (KFold).
        model: ``"ridge"`` (features standardised, alpha chosen by RidgeCV with an
            inner K-fold CV on the training fold, grouped like the outer one) or
            ``"mlp"`` (standardised features projected on their first 64 principal
            components, one hidden layer of 64 ReLU units, L-BFGS; weight decay chosen
            from `MLP_ALPHAS` by an inner 3-fold CV on the training fold, grouped like
            the outer one).
        folds: number of folds, reduced to the number of rows (or groups) when larger.
        seed: seed of the fold shuffle and the MLP initialisation.

    Returns:
        (n,) out-of-fold predictions. Targets are standardised with the training fold's
        mean and std for fitting and mapped back for the returned values, then clipped to
        the training fold's range: a regressor cannot know that a value past everything it
        was shown is possible (an unclipped MLP extrapolating on a task it never saw
        scored R² ≈ -2.4 on the bench zoo).
    """
    x = as_matrix(embeddings, "embeddings")
    y = as_vector(targets, "targets", x.shape[0])
    codes = None if groups is None else label_codes(as_labels(groups, len(y), "groups"))[0]
    if model not in ("ridge", "mlp"):
        raise ValueError(f"unknown model {model!r}; use 'ridge' or 'mlp'")
    pred = np.empty_like(y)
    for train, test in _splits(len(y), codes, folds, seed):
        mean, std = y[train].mean(), y[train].std()
        std = std if std > 0 else 1.0
        inner = _inner_splits(codes, train, folds if model == "ridge" else MLP_INNER_FOLDS, seed)
        regressor = _make_regressor(model, seed, inner, x.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            regressor.fit(x[train], (y[train] - mean) / std)
        raw = regressor.predict(x[test]) * std + mean
        pred[test] = np.clip(raw, y[train].min(), y[train].max())
    return pred


def accuracy_prediction(
    embeddings: ArrayLike,
    targets: ArrayLike,
    groups: ArrayLike | None = None,
    model: Regressor = "ridge",
    folds: int = FOLDS,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated accuracy prediction from frozen embeddings, scored by `regression_metrics`.

    Args:
        embeddings: (n, d) frozen embeddings.
        targets: (n,) accuracies (or any scalar to predict).
        groups: (n,) groups never split across folds (e.g. task); None for KFold.
        model: ``"ridge"`` or ``"mlp"`` (see `predict_out_of_fold`).
        folds: number of folds.
        seed: seed of the folds and the MLP.

    Returns:
        ``{"R2", "MSE", "spearman", "kendall_tau"}`` of the pooled out-of-fold predictions.
    """
    pred = predict_out_of_fold(embeddings, targets, groups, model, folds, seed)
    return regression_metrics(targets, pred)


def _splits(
    n: int, groups: np.ndarray | None, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: GroupKFold when group codes are given, else shuffled KFold."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2; got {folds}")
    if groups is None:
        if n < 2:
            raise ValueError(f"cross-validation needs at least 2 rows; got {n}")
        splitter: Any = KFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((n, 1))))
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups; got {n_groups}")
    splitter = GroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((n, 1)), groups=groups))


def _inner_splits(
    groups: np.ndarray | None, train: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits of the training rows for choosing hyper-parameters, grouped when possible."""
    inner = None if groups is None else groups[train]
    if inner is not None and len(np.unique(inner)) < 2:
        inner = None  # a single training group: fall back to splitting rows
    return _splits(len(train), inner, folds, seed)


def _make_regressor(
    model: Regressor, seed: int, inner_cv: list[tuple[np.ndarray, np.ndarray]], dim: int
) -> Pipeline | GridSearchCV:
    """Ridge with alpha chosen on `inner_cv`, or the MLP with its weight decay chosen there.

    The MLP reads principal components: on a few hundred models, 4096 probe features would
    make each L-BFGS fit ~40x slower for a network that can only overfit them."""
    if model == "ridge":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, cv=inner_cv))
    smallest = min(len(train) for train, _ in inner_cv)
    mlp = MLPRegressor(
        hidden_layer_sizes=(MLP_HIDDEN,), solver="lbfgs", max_iter=300, random_state=seed
    )
    pipe = make_pipeline(
        StandardScaler(), PCA(min(MLP_COMPONENTS, dim, smallest), random_state=seed), mlp
    )
    grid = {"mlpregressor__alpha": list(MLP_ALPHAS)}
    return GridSearchCV(pipe, grid, cv=inner_cv, scoring="neg_mean_squared_error")

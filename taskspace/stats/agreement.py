"""How far an approximate space can stand in for the exact one: first-order transfer against eval2's.

The agreement a reader needs before trusting a screen: correlation over the off-diagonal cells (what the fits
read), per row (does one tuned task's ranking of the others hold), the diagonal (own-task gain) and the scale of
the off-diagonal values. Calibration and screening ask what a little exact work buys on top of it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    return float(pearsonr(x, y)[0]), float(spearmanr(x, y)[0])


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if np.isfinite(a) and np.isfinite(b) and b != 0 else None


def agreement(exact: np.ndarray, approx: np.ndarray) -> dict:
    """Pearson and Spearman of approx against exact over the off-diagonal cells and over all cells; per-row Pearson
    off the diagonal (median, worst); the mean diagonal ratio approx/exact; the off-diagonal magnitude ratio
    mean|approx| / mean|exact| (above 1: the approximation overstates transfer)."""
    exact, approx = np.asarray(exact, float), np.asarray(approx, float)
    off = ~np.eye(len(exact), dtype=bool)
    pearson, spearman = _corr(exact[off], approx[off])
    pearson_all, spearman_all = _corr(exact.ravel(), approx.ravel())
    rows = [_corr(exact[i][off[i]], approx[i][off[i]])[0] for i in range(len(exact))]
    rows = [r for r in rows if r is not None]
    return {
        "pearson": pearson,
        "spearman": spearman,
        "pearson_all": pearson_all,
        "spearman_all": spearman_all,
        "row_pearson_median": float(np.median(rows)) if rows else None,
        "row_pearson_min": float(np.min(rows)) if rows else None,
        "diagonal_ratio": _ratio(np.nanmean(np.diag(approx)), np.nanmean(np.diag(exact))),
        "magnitude_ratio": _ratio(np.nanmean(np.abs(approx[off])), np.nanmean(np.abs(exact[off]))),
        "cells": int(np.isfinite(exact[off]).sum()),
    }


def calibrate_columns(approx: np.ndarray, exact_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """approx rescaled per evaluated task (column j) by the least-squares slope through the origin of exact on
    approx over the rows computed exactly (`rows`: their indices; `exact_rows`: those rows of exact transfer),
    off the diagonal. The exact rows themselves are returned exact. Cost: len(rows) eval2 passes."""
    approx = np.asarray(approx, float)
    out = approx.copy()
    t = len(approx)
    for j in range(t):
        keep = [k for k, i in enumerate(rows) if i != j]
        x, y = approx[rows[keep], j], exact_rows[keep, j]
        ok = np.isfinite(x) & np.isfinite(y)
        denom = float((x[ok] ** 2).sum())
        if denom > 0:
            out[:, j] = approx[:, j] * float((x[ok] * y[ok]).sum()) / denom
    out[rows] = exact_rows
    return out


def screen_recall(exact: np.ndarray, approx: np.ndarray, top: float) -> float | None:
    """Of the off-diagonal cells largest in |exact| (the top fraction), the share that are also in the top fraction
    by |approx|: how many of the cells worth confirming a first-order screen would send to eval2."""
    exact, approx = np.asarray(exact, float), np.asarray(approx, float)
    off = ~np.eye(len(exact), dtype=bool) & np.isfinite(exact) & np.isfinite(approx)
    e, a = np.abs(exact[off]), np.abs(approx[off])
    k = max(1, int(round(top * e.size)))
    if e.size == 0:
        return None
    true, picked = set(np.argsort(-e, kind="stable")[:k]), set(np.argsort(-a, kind="stable")[:k])
    return len(true & picked) / k

"""Summaries of training histories (``<base>_history.csv``)."""

import pandas as pd

#: Loss terms, for which lower is better.
LOSS_COLUMNS = ("loss", "NLL", "KL_F", "KL_Sigma", "NLL_test", "grad_norm")

#: Prediction correlations, for which higher is better.
CC_COLUMNS = ("ccpred_train", "ccpred_test")


def history_metrics(history):
    """The known metric columns present in a history, in display order.

    Parameters
    ----------
    history : pandas.DataFrame

    Returns
    -------
    list of str
    """
    return [c for c in LOSS_COLUMNS + CC_COLUMNS if c in history.columns]


def history_summary(histories):
    """Last and best value of each metric of one or more histories.

    Parameters
    ----------
    histories : dict of str to pandas.DataFrame
        Training histories (with a ``step`` column) by name.

    Returns
    -------
    pandas.DataFrame
        One row per history and metric: ``run``, ``metric``, ``last``,
        ``last_step``, ``best`` and ``best_step`` (best = lowest loss term or
        grad_norm, highest CCpred).  Steps where the metric was not evaluated
        (NaN) are skipped.
    """
    rows = []
    for name, history in histories.items():
        for metric in history_metrics(history):
            values = history[["step", metric]].dropna()
            if values.empty:
                rows.append({"run": name, "metric": metric})
                continue
            best = values[metric].idxmax() if metric in CC_COLUMNS else values[metric].idxmin()
            rows.append({
                "run": name, "metric": metric,
                "last": values[metric].iloc[-1], "last_step": values["step"].iloc[-1],
                "best": values.loc[best, metric], "best_step": values.loc[best, "step"],
            })
    columns = ["run", "metric", "last", "last_step", "best", "best_step"]
    table = pd.DataFrame(rows, columns=columns)
    for step in ("last_step", "best_step"):
        table[step] = table[step].astype(float).round().astype("Int64")
    return table

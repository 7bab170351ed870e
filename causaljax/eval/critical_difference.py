"""Critical-difference analysis of the study's arms over datasets, with ``autorank``.

Each arm (method @ volume) gets one score per dataset: its test ROC-AUC averaged over the
folds that every arm finished. ``autorank`` then chooses the test (Friedman + Nemenyi when
the scores are not normal, repeated-measures ANOVA + Tukey otherwise), ranks the arms and
draws the critical-difference diagram. Datasets where some arm has no run are left out.
"""

from __future__ import annotations

import pandas as pd


def dataset_scores(df: pd.DataFrame) -> pd.DataFrame:
    """datasets x arms ('method@volume') mean test AUC over the folds that every arm ran."""
    df = df.assign(arm=[f"{m}@{v:g}" for m, v in zip(df.method, df.volume)])
    wide = df.pivot_table(index=["dataset", "fold"], columns="arm", values="test_auc",
                          aggfunc="first").dropna()
    return wide.groupby(level="dataset").mean()


def critical_difference(df: pd.DataFrame, png: str | None = None, *, alpha: float = 0.05):
    """-> (markdown lines, autorank result or None); with ``png``, the CD diagram there.
    Needs at least 5 datasets and 2 arms (autorank's minimum for its tests)."""
    scores = dataset_scores(df)
    if scores.shape[0] < 5 or scores.shape[1] < 2:
        return [f"Critical difference: needs >= 5 datasets with every arm (have "
                f"{scores.shape[0]}) and >= 2 arms."], None
    import contextlib
    import io
    import warnings

    from autorank import autorank

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        res = autorank(scores, alpha=alpha, verbose=False, order="descending")
    center = "median" if "median" in res.rankdf else "mean"  # non-parametric / parametric
    lines = [f"Critical difference (autorank over {scores.shape[0]} datasets, mean test AUC "
             f"per dataset, alpha {alpha}): omnibus test {res.omnibus}, p = {res.pvalue:.3g}; "
             f"post-hoc {res.posthoc}" + (f", critical difference {res.cd:.2f} ranks"
                                          if res.cd is not None else "") + ".", "",
             f"| arm | mean rank (1 = best) | {center} AUC |", "|---|---:|---:|"]
    for arm, row in res.rankdf.sort_values("meanrank").iterrows():
        lines.append(f"| {arm} | {row['meanrank']:.2f} | {row[center]:.3f} |")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from autorank import plot_stats

        from causaljax.eval.files import write_atomically

        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            ax = plot_stats(res, allow_insignificant=True)
        fig = ax.get_figure() if hasattr(ax, "get_figure") else plt.gcf()
        write_atomically(png, lambda tmp: fig.savefig(tmp, bbox_inches="tight", dpi=120))
        plt.close(fig)
        lines += ["", f"Diagram: {png.rsplit('/', 1)[-1]}."]
    return lines, res

"""F6 (docs/method.md §7, §8): measured async speedup and its efficiency against S.

From the LM benchmark (bench.json, aggregated into the throughput table): left, the measured
speedup of asynchronous over synchronous steps with the ideal (t_gen + t_train)/max(t_gen,
t_train) as a dashed line; right, the efficiency measured/ideal. The exact testbed has no
generation/training overlap, so without a benchmark the figure says so.

    python code/plot_throughput.py --throughput results/tables/throughput.parquet \
        --pdf figures/throughput.pdf --png figures/throughput.png
"""

import matplotlib.pyplot as plt
import pandas as pd

import figures_common as fc


def main() -> None:
    args = fc.parse_args(__doc__, ("throughput",))
    fc.setup()
    table = pd.read_parquet(args.throughput) if args.throughput is not None else pd.DataFrame()
    if len(table):
        table = table.dropna(subset=["S", "speedup"]).sort_values("S")
    if "actors" in table and table["actors"].notna().any():  # one actor engine, as the sync baseline
        table = table[table["actors"].fillna(1) == 1]
    if not len(table):
        fc.no_data(
            args,
            "F6: throughput",
            "No throughput benchmark yet: this figure needs `stalegrpo bench lm` "
            "(lm.enabled and lm.bench.enabled in the workflow config).",
        )
        return
    x = table["S"].clip(lower=0.5)
    fig, (ax_speed, ax_eff) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    ax_speed.plot(x, table["speedup"], marker="o", color="black", label="measured async / sync")
    if table["ideal"].notna().any():
        ax_speed.plot(
            x,
            table["ideal"],
            ls="--",
            marker="s",
            mfc="white",
            color="0.45",
            label="ideal (t_gen + t_train) / max(t_gen, t_train)",
        )
    ax_speed.axhline(1.0, color="0.7", lw=0.8, ls=":")
    ax_speed.set(
        xscale="log",
        xlabel="max lag S (learner steps; S = 0 drawn at 0.5)",
        ylabel="speedup over synchronous (×)",
    )
    ax_speed.legend(fontsize=7)
    ax_eff.plot(x, table["efficiency"], marker="^", color="black", ls="-.")
    # above 1 is noise (overlap alone cannot do it): drawn, not clipped, with the line at 1
    ax_eff.axhline(1.0, color="0.7", lw=0.8, ls=":")
    ax_eff.set(
        xscale="log",
        ylim=(0, max(1.05, 1.05 * float(table["efficiency"].max()))),
        xlabel="max lag S (learner steps; S = 0 drawn at 0.5)",
        ylabel="efficiency (measured / ideal)",
    )
    for ax in (ax_speed, ax_eff):
        fc.lag_axis(ax, table["S"])
    fig.suptitle("F6: throughput of asynchronous GRPO — LM benchmark", fontsize=9)
    fc.save(fig, args)


if __name__ == "__main__":
    main()

# The experiment graph of the reproduction (docs/method.md §8):
#   config -> runs (exact testbed, LM) -> tidy tables -> fits + LaTeX macros -> figures -> paper
#
#   snakemake --cores 2                                   # CPU default preset (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml    # smoke preset, a few minutes
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # GPU cluster
#   snakemake figures/bias.pdf                            # one figure from the runs on disk
#   snakemake --report report.html                        # every figure with its caption
#
# Rules live in rules/*.smk; rules/common.smk validates the config against
# config/schema/workflow.schema.yaml and holds every path and helper.


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/exact.smk"
include: "rules/lm.smk"
include: "rules/analysis.smk"
include: "rules/figures.smk"
include: "rules/paper.smk"


localrules:
    all,
    aggregate_exact,
    aggregate_lm,
    aggregate_bench,
    fits_exact,
    fits_lm,
    macros,
    figure_bias,
    figure_collapse,
    figure_frontier,
    figure_dashboard,
    figure_schedules,
    figure_throughput,
    paper,


rule all:
    default_target: True
    input:
        default_targets(),

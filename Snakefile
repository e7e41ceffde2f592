# The experiment graph of the reproduction (docs/method.md §8):
#   config -> runs (exact testbed, LM) -> tidy tables -> fits + LaTeX macros -> figures -> paper
#
#   snakemake --cores 2                                   # CPU default preset (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml    # smoke preset, a few minutes
#   snakemake --profile profiles/slurm --configfile config/paper.yaml   # GPU cluster (docs/cluster.md)
#   snakemake --cores 1 figures/bias.pdf                  # one figure from the runs on disk
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


# Only `all` (no command) runs where Snakemake runs. Every other job, light ones included
# (tables, fits, figures, paper), is a job of its own on a cluster, with the resources the
# profile gives it (profiles/slurm, docs/cluster.md); locally all of them run on this machine.
localrules:
    all,


rule all:
    default_target: True
    input:
        default_targets(),

# Figures: one rule per figure of docs/method.md §8 (figure_bias, ..., figure_throughput), each
# running code/plot_<name>.py on the tables and fits it reads (FIGURE_READS in rules/common.smk)
# and nothing else. Each writes figures/<name>.pdf and .png; the PNG goes into
# `snakemake --report` with the caption in report/<name>.rst. Light CPU jobs (one thread).

for _name in FIGURES:

    rule:
        name: f"figure_{_name}"
        input:
            **FIGURE[_name]["inputs"],
            script=FIGURE[_name]["script"],
            code=FIGURE[_name]["code"],
        output:
            pdf=FIGURE[_name]["pdf"],
            png=report(FIGURE[_name]["png"], caption=FIGURE[_name]["caption"], category="Figures"),
        params:
            inputs=FIGURE[_name]["args"],
            experiment=config["figures"]["experiment"],
            dashboard_S=config["figures"]["dashboard_S"],
            dpi=config["figures"]["dpi"],
        log:
            FIGURE[_name]["log"],
        conda:
            "../envs/analysis.yaml"
        shell:
            "python {input.script} {params.inputs} --experiment {params.experiment} --S {params.dashboard_S}"
            " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"

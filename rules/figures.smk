# Figures: one rule per figure of docs/method.md §8, each running code/plot_<name>.py on the
# aggregated tables and fits only. Each writes figures/<name>.pdf and .png; the PNG goes into
# `snakemake --report` with the caption in report/<name>.rst.


rule figure_bias:
    input:
        steps=PATHS["steps"],
        runs=PATHS["runs"],
        fits=PATHS["fits"],
        script=FIGURE["bias"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["bias"]["pdf"],
        png=report(FIGURE["bias"]["png"], caption=FIGURE["bias"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
    log:
        FIGURE["bias"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --steps {input.steps} --runs {input.runs} --fits {input.fits} --experiment {params.experiment}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figure_collapse:
    input:
        runs=PATHS["runs"],
        fits=PATHS["fits"],
        script=FIGURE["collapse"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["collapse"]["pdf"],
        png=report(FIGURE["collapse"]["png"], caption=FIGURE["collapse"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
    log:
        FIGURE["collapse"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --runs {input.runs} --fits {input.fits} --experiment {params.experiment}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figure_frontier:
    input:
        runs=PATHS["runs"],
        fits=PATHS["fits"],
        script=FIGURE["frontier"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["frontier"]["pdf"],
        png=report(FIGURE["frontier"]["png"], caption=FIGURE["frontier"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
    log:
        FIGURE["frontier"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --runs {input.runs} --fits {input.fits} --experiment {params.experiment}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figure_dashboard:
    input:
        steps=PATHS["steps"],
        runs=PATHS["runs"],
        script=FIGURE["dashboard"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["dashboard"]["pdf"],
        png=report(FIGURE["dashboard"]["png"], caption=FIGURE["dashboard"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
        dashboard_S=config["figures"]["dashboard_S"],
    log:
        FIGURE["dashboard"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --steps {input.steps} --runs {input.runs} --experiment {params.experiment} --S {params.dashboard_S}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figure_schedules:
    input:
        steps=PATHS["steps"],
        runs=PATHS["runs"],
        script=FIGURE["schedules"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["schedules"]["pdf"],
        png=report(FIGURE["schedules"]["png"], caption=FIGURE["schedules"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
    log:
        FIGURE["schedules"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --steps {input.steps} --runs {input.runs} --experiment {params.experiment}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"


rule figure_throughput:
    input:
        throughput=PATHS["throughput"],
        script=FIGURE["throughput"]["script"],
        common="code/figures_common.py",
    output:
        pdf=FIGURE["throughput"]["pdf"],
        png=report(FIGURE["throughput"]["png"], caption=FIGURE["throughput"]["caption"], category="Figures"),
    params:
        experiment=config["figures"]["experiment"],
        dpi=config["figures"]["dpi"],
    log:
        FIGURE["throughput"]["log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --throughput {input.throughput} --experiment {params.experiment}"
        " --dpi {params.dpi} --pdf {output.pdf} --png {output.png} > {log} 2>&1"

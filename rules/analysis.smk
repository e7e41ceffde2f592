# Analysis: aggregate every run on disk into tidy tables, then fit the scaling laws.
# Figures and fits read only these tables, so a plot tweak never re-runs a simulation.


rule aggregate:
    input:
        exact_steps=PATHS["all_exact_steps"],
        exact_runs=PATHS["all_exact_runs"],
        lm_steps=PATHS["all_run_steps"],
        lm_summaries=PATHS["all_run_summaries"],
        bench=bench_outputs,
        script="code/aggregate.py",
    output:
        steps=PATHS["steps"],
        runs=PATHS["runs"],
        throughput=PATHS["throughput"],
    log:
        PATHS["aggregate_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script}"
        " --exact-runs {input.exact_runs}"
        " --lm-summaries {input.lm_summaries} --bench {input.bench}"
        " --steps {output.steps} --runs {output.runs} --throughput {output.throughput}"
        " > {log} 2>&1"


rule fits:
    input:
        steps=PATHS["steps"],
        runs=PATHS["runs"],
        throughput=PATHS["throughput"],
        exact_configs=[EXACT["experiments"][name]["config"] for name in EXACT_EXPERIMENTS],
        script="code/make_fits.py",
    output:
        fits=PATHS["fits"],
        macros=PATHS["macros"],
    params:
        options=fit_options,
        lm_options=json.dumps(LM["fits"]),
    log:
        PATHS["fits_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python {input.script} --steps {input.steps} --runs {input.runs}"
        " --throughput {input.throughput} --options {params.options:q} --lm-options {params.lm_options:q}"
        " --fits {output.fits} --macros {output.macros} > {log} 2>&1"

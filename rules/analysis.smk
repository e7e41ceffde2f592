# Analysis: each source's runs become tidy tables, each source's tables its fits, and the fits
# the paper's macros. A figure or fit depends only on the tables it reads, so a plot tweak or a
# fit setting never reruns a simulation, and the benchmark's figure needs no exact grid.
# All of these are light CPU jobs: one thread, the profile's default resources on a cluster.


rule aggregate_exact:
    input:
        runs=PATHS["exact_runs"],
        steps=PATHS["exact_steps"],
        code=CODE["aggregate"],
    output:
        steps=PATHS["exact_table_steps"],
        runs=PATHS["exact_table_runs"],
    log:
        PATHS["aggregate_exact_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/aggregate.py exact --runs-in {input.runs} --steps {output.steps} --runs {output.runs} > {log} 2>&1"


rule aggregate_lm:
    input:
        steps=PATHS["all_run_steps"],
        summaries=PATHS["all_run_summaries"],
        code=CODE["aggregate"],
    output:
        steps=PATHS["lm_table_steps"],
        runs=PATHS["lm_table_runs"],
    log:
        PATHS["aggregate_lm_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/aggregate.py lm --summaries {input.summaries} --steps {output.steps} --runs {output.runs}"
        " > {log} 2>&1"


rule aggregate_bench:
    input:
        bench=bench_outputs,
        code=CODE["aggregate"],
    output:
        PATHS["throughput"],
    log:
        PATHS["aggregate_bench_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/aggregate.py bench --bench {input.bench} --throughput {output} > {log} 2>&1"


rule fits_exact:
    input:
        steps=PATHS["exact_table_steps"],
        runs=PATHS["exact_table_runs"],
        code=CODE["fits"],
    output:
        PATHS["exact_fits"],
    params:
        options=exact_fit_options,
    log:
        PATHS["fits_exact_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/make_fits.py exact --steps {input.steps} --runs {input.runs} --options {params.options:q}"
        " --out {output} > {log} 2>&1"


rule fits_lm:
    input:
        steps=PATHS["lm_table_steps"],
        runs=PATHS["lm_table_runs"],
        code=CODE["fits"],
    output:
        PATHS["lm_fits"],
    params:
        options=lm_fit_options,
    log:
        PATHS["fits_lm_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/make_fits.py lm --steps {input.steps} --runs {input.runs} --options {params.options:q}"
        " --out {output} > {log} 2>&1"


rule macros:
    input:
        exact=expand(PATHS["exact_fits"], experiment=EXACT_EXPERIMENTS),
        lm=lm_fits_inputs,
        throughput=PATHS["throughput"],
        code=CODE["fits"],
    output:
        PATHS["macros"],
    params:
        args=macros_args,
    log:
        PATHS["macros_log"],
    conda:
        "../envs/analysis.yaml"
    shell:
        "python code/make_fits.py macros {params.args} --throughput {input.throughput} --out {output} > {log} 2>&1"

# One training job per run. The declared outputs are the final weights and the complete metrics log; the
# resumable checkpoint (paths.CHECKPOINT) lives beside them, undeclared, so a job that SLURM stops (walltime, preemption) and the
# profile retries picks up where it stopped instead of starting over.


rule run_config:
    output:
        run_file(paths.TRAIN_CONFIG),
    log:
        f"{RESULTS}/logs/run_config/{{run}}.log",
    conda:
        ENV
    params:
        values=lambda w: experiments.train_config(config, RUNS[w.run]),
    script:
        "../scripts/write_run_config.py"


rule train:
    input:
        config=run_file(paths.TRAIN_CONFIG),
        data=lambda w: dataset_marker(RUNS[w.run].dataset),
        earlier_stage=earlier_stage_model,
    output:
        model=run_file(paths.FINAL_MODEL),
        metrics=run_file(paths.METRICS),
    log:
        f"{RESULTS}/logs/train/{{run}}.log",
    conda:
        ENV
    threads: config["resources"]["train"]["cpus_per_task"]
    resources:
        **resources_of("train"),
    params:
        out=lambda w, output: os.path.dirname(output.model),
        launch=train_launcher,
    shell:
        # exec: the trainer replaces the job's shell, so a SIGTERM to the job (walltime, scancel, preemption) reaches
        # it with nothing in between to die first and take it down; it saves at the end of its iteration.
        # Snakemake starts each attempt's log afresh; a resumed one begins "resumed from iteration N (..., saved on
        # SIGTERM)". Every attempt's SLURM log stays in .snakemake/slurm_logs/.
        "export OMP_NUM_THREADS={threads}; "
        "exec {params.launch} train --config {input.config} --out {params.out} >> {log} 2>&1"


rule curves:
    input:
        run_file(paths.METRICS),
    output:
        report(
            f"{RESULTS}/figures/curves/{{run}}.png",
            caption="../report/curves.rst",
            category="Training curves",
            labels={"run": "{run}"},
        ),
    log:
        f"{RESULTS}/logs/curves/{{run}}.log",
    conda:
        ENV
    shell:
        "python -m scbloss curves --metrics {input} --out {output} --title {wildcards.run} > {log} 2>&1"

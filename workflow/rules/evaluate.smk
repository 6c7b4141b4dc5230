# Evaluation of each trained run on the split its tables need, the COCO test-dev submissions, and the matching
# statistics behind the paper's Figs. 1 and 3.


rule evaluate:
    input:
        model=run_file(paths.FINAL_MODEL),
        data=lambda w: dataset_marker(RUNS[w.run].dataset),
    output:
        experiments.metrics_path(f"{RESULTS}/runs", "{run}", "{split}"),
    log:
        f"{RESULTS}/logs/evaluate/{{run}}-{{split}}.log",
    conda:
        ENV
    threads: config["resources"]["evaluate"]["cpus_per_task"]
    resources:
        **resources_of("evaluate"),
    params:
        dataset=lambda w: dataset_args(RUNS[w.run].dataset, w.split),
        out=lambda w, output: os.path.dirname(output[0]),
        thresholds=",".join(str(t) for t in config["evaluate"]["thresholds"]),
        backend=config["evaluate"]["coco_backend"],
        batch=config["evaluate"]["batch_size"],
        workers=config["evaluate"]["workers"],
    shell:
        "OMP_NUM_THREADS={threads} python -m scbloss evaluate --checkpoint {input.model} {params.dataset} "
        "--split {wildcards.split} --out {params.out} --thresholds {params.thresholds} "
        "--coco-backend {params.backend} --batch-size {params.batch} --workers {params.workers} > {log} 2>&1"


rule evaluate_test_dev:
    input:
        model=run_file(paths.FINAL_MODEL),
        data=lambda w: dataset_marker(RUNS[w.run].dataset),
    output:
        paths.eval_file(f"{RESULTS}/runs", "{run}", "test-dev", paths.test_dev_zip_name("{run}")),
    log:
        f"{RESULTS}/logs/evaluate/{{run}}-test-dev.log",
    conda:
        ENV
    resources:
        **resources_of("evaluate"),
    params:
        dataset=lambda w: dataset_args(RUNS[w.run].dataset, "test-dev"),
        out=lambda w, output: os.path.dirname(output[0]),
    shell:
        "python -m scbloss evaluate --checkpoint {input.model} {params.dataset} --split test-dev --out {params.out} "
        "--name {wildcards.run} > {log} 2>&1"


rule match_stats:
    input:
        lambda w: dataset_marker(match_stats_entry(w.name)["dataset"]),
    output:
        csv=f"{RESULTS}/figures/matching/{{name}}.csv",
        png=report(
            f"{RESULTS}/figures/matching/{{name}}.png",
            caption="../report/matching.rst",
            category="Matching statistics",
            labels={"figure": "{name}"},
        ),
    log:
        f"{RESULTS}/logs/match_stats/{{name}}.log",
    conda:
        ENV
    params:
        args=lambda w: match_stats_args(w.name),
    shell:
        "python -m scbloss match-stats {params.args} --csv {output.csv} --png {output.png} > {log} 2>&1"

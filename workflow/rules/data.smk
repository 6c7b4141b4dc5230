# Datasets: the generated toy data, or VOC / COCO downloaded (md5-checked) or adopted from an existing folder.


rule toy_data:
    output:
        toy_marker("{toy_root}"),
    log:
        f"{RESULTS}/logs/data/toy-{{toy_root}}.log",
    wildcard_constraints:
        toy_root="|".join(re.escape(root) for root in TOY_DATASETS) or "no-toy-data",
    conda:
        ENV
    params:
        toy=lambda w: TOY_DATASETS[w.toy_root],
    shell:
        "python -m scbloss data toy --out {wildcards.toy_root} --images {params.toy[train_images]} "
        "--test-images {params.toy[test_images]} --seed {params.toy[seed]} > {log} 2>&1"


rule real_data:
    output:
        f"{RESULTS}/data/{{family}}.ready",
    log:
        f"{RESULTS}/logs/data/{{family}}.log",
    wildcard_constraints:
        family="voc|coco",
    conda:
        ENV
    params:
        source=lambda w: config["data"][w.family],
        args=lambda w: (
            f"--existing {config['data'][w.family]['path']}"
            if config["data"][w.family]["source"] == "existing"
            else f"--root {config['data'][w.family]['root']}"
            + (f" --mirror {config['data'][w.family]['mirror']}" if config["data"][w.family].get("mirror") else "")
        ),
    shell:
        "python -m scbloss data download --dataset {wildcards.family} {params.args} > {log} 2>&1 && touch {output}"


rule custom_data:
    # Your own dataset: both splits read whole and every image decoded; any problem stops the DAG here, named.
    input:
        lambda w: custom_data_input(w.family),
    output:
        f"{RESULTS}/data/{{family}}.ready",
    log:
        f"{RESULTS}/logs/data/{{family}}.log",
    wildcard_constraints:
        family="|".join(re.escape(f) for f in CUSTOM) or "no-custom-data",
    conda:
        ENV
    params:
        splits=lambda w: [
            experiments.dataset_entry(config, w.family, split)
            for split in (experiments.train_split(config, w.family), experiments.test_split(config, w.family))
        ],
    script:
        "../scripts/check_dataset.py"

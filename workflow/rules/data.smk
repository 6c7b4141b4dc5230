# Datasets: the generated toy data, or VOC / COCO downloaded (md5-checked) or adopted from an existing folder.


rule toy_data:
    output:
        f"{config['data']['voc']['root']}/toy.json"
        if config["data"]["voc"]["source"] == "toy"
        else f"{RESULTS}/data/toy/toy.json",
    log:
        f"{RESULTS}/logs/data/toy.log",
    conda:
        ENV
    params:
        root=lambda wildcards, output: os.path.dirname(output[0]),
        toy=config["toy"],
    shell:
        "python -m scbloss data toy --out {params.root} --images {params.toy[train_images]} "
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

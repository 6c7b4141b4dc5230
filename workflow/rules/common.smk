# The experiment matrix and the path helpers of every rules file. It imports no torch, so a dry-run of the
# paper's whole DAG parses in about two seconds.


import os
import re


from scbloss import experiments, paths, pipeline

# Rules run `python -m scbloss`: the Python of their environment (the driver's venv, the --sdm conda env, the
# container) importing this checkout's src/, so the conda env needs only the pinned dependencies. Extra detector
# modules reach every job through the environment, as the package path does.
# In a container the image's python runs the rules (the host's venv may lie inside the bound checkout).
IN_CONTAINER = "apptainer" in {str(m) for m in workflow.deployment_settings.deployment_method}
if not IN_CONTAINER:
    pipeline.expose_interpreter_scripts()
elif not config["container"]:
    raise ValueError(
        "--sdm apptainer needs an image: set `container:` in the config (or --config container=docker://...) to the "
        "image you built from envs/Dockerfile and pushed (docs/containers.md)"
    )
pipeline.expose_workflow_package(os.path.join(workflow.basedir, "src"))
pipeline.expose_detector_modules(config["detector_modules"])

RESULTS = config["results"]
experiments.check_train_block(config)
SPECS = experiments.table_specs(config, os.path.join(workflow.basedir, "workflow", "schemas", "table.schema.yaml"))
SEEDS = config["seeds"]
TABLE_RUNS = experiments.runs_for_tables(SPECS, SEEDS)
# and the earlier stages they start from (train.stages: DSSD after SSD on ResNet-101), trained but not evaluated
RUNS = {run.id: run for run in experiments.with_earlier_stages(config, TABLE_RUNS)}
for _run in RUNS.values():  # each run's training config, checked as its job will read it: errors at dry-run
    experiments.checked_train_config(config, _run)
IMPORTED = config["metrics_dir"]  # metrics computed elsewhere: tables render from them, nothing trains
RUNS_DIR = IMPORTED or f"{RESULTS}/runs"
# The matching statistics read the datasets themselves, so tables rendered from imported metrics go without them.
FIGURES = [] if IMPORTED else experiments.figure_entries(config, TABLE_RUNS)  # not again for a first stage
SHOW_MATCHING = {} if IMPORTED else {e["name"]: e for e in experiments.show_matching_entries(config, TABLE_RUNS)}
TOY = all(config["data"][family]["source"] == "toy" for family in ("voc", "coco") if family in config["data"])
TOY_DATASETS = experiments.toy_datasets(config)  # folder -> size and seed, for rule toy_data
COMPARISONS = {spec["id"] for spec in SPECS if spec["kind"] == "comparison"}  # your datasets' tables
PAPER_TABLES = [spec for spec in SPECS if spec["id"] not in COMPARISONS]
CUSTOM = [family for family, source in config["data"].items() if source.get("layout")]  # your own datasets
TEST_SPLITS = sorted({"test", "val"} | {experiments.test_split(config, f) for f in config["data"]})
ENV = "../../envs/scbloss.yaml"


wildcard_constraints:
    run="|".join(re.escape(r) for r in RUNS) or "no-runs",
    split="|".join(re.escape(s) for s in TEST_SPLITS),
    table="|".join(re.escape(spec["id"]) for spec in SPECS),


def run_file(name, run="{run}"):
    """A file of a run folder (names from scbloss.paths, which the trainer and evaluation write by)."""
    return paths.run_file(f"{RESULTS}/runs", run, name)


def dataset_marker(family):
    """A file that exists once a dataset family is ready to read (your own datasets: once checked)."""
    source = config["data"][family]
    if source["source"] == "toy" and family not in CUSTOM:
        return toy_marker(source["root"])
    return f"{RESULTS}/data/{family}.ready"


def toy_marker(root):
    """The file `scbloss data toy` writes last in a toy dataset's folder."""
    return f"{root}/toy.json"


def custom_data_input(family):
    """What a dataset of yours is checked from: nothing but its folder, or the toy data generated into it."""
    source = config["data"][family]
    return [toy_marker(source["root"])] if source["source"] == "toy" else []


def table_spec_file(table):
    """A paper table's file, or the spec of a comparison table, written from the config by rule comparison_spec."""
    if table in COMPARISONS:
        return f"{RESULTS}/tables/specs/{table}.yaml"
    return f"{config['tables_dir']}/{table}.yaml"


def table_metrics(spec):
    """The metrics files one table reads: each of its runs on the table's split. Imported metrics are taken as
    they are: a run missing from metrics_dir renders as "not run" instead of failing."""
    files = {
        experiments.metrics_path(RUNS_DIR, experiments.row_run(spec, row, seed).id, spec["split"])
        for row in spec["rows"]
        for seed in range(experiments.table_seeds(spec, SEEDS))
    }
    if IMPORTED:
        files = {path for path in files if os.path.exists(path)}
    return sorted(files)


def match_stats_name(entry):
    suffix = "-augmented" if entry.get("augment") else ""
    return f"{entry['dataset']}-{entry['model']}-{entry['split']}{suffix}"


def figure_outputs():
    return [f"{RESULTS}/figures/matching/{match_stats_name(e)}.png" for e in FIGURES]


def show_matching_outputs():
    return [f"{RESULTS}/figures/show_matching/{name}.png" for name in SHOW_MATCHING]


def curve_outputs():
    return [] if IMPORTED else [f"{RESULTS}/figures/curves/{run_id}.png" for run_id in RUNS]


def test_dev_outputs():
    if IMPORTED or not config["evaluate"]["test_dev"]:
        return []
    return [
        paths.eval_file(f"{RESULTS}/runs", run.id, "test-dev", paths.test_dev_zip_name(run.id))
        for run in TABLE_RUNS
        if run.dataset == "coco"
    ]


def all_outputs():
    tables = [f"{RESULTS}/tables/{spec['id']}.{suffix}" for spec in SPECS for suffix in ("md", "tex", "csv")]
    summary = [f"{RESULTS}/tables/summary.md"] if PAPER_TABLES else []  # how the paper's tables compare
    return tables + summary + figure_outputs() + show_matching_outputs() + curve_outputs() + test_dev_outputs()


def earlier_stage_model(wildcards):
    """The final model a run starts from when its model trains in stages (train.stages); none otherwise."""
    earlier = experiments.earlier_stage(config, RUNS[wildcards.run])
    return [run_file(paths.FINAL_MODEL, earlier.id)] if earlier else []


def resources_of(rule):
    """A rule's `resources:` from the config (filled with the schema's defaults); unset values are left out."""
    return {name: value for name, value in config["resources"][rule].items() if value is not None}


def gpus_per_node(resources):
    """GPUs a job holds on each node: its `gpu` resource (one node), or the count in a `gres` of gpu[:model]:N."""
    gres = str(getattr(resources, "gres", "") or "")
    if gres.startswith("gpu"):
        return int(gres.split(":")[-1])
    return int(getattr(resources, "gpu", 0) or 0)


def train_launcher(wildcards, resources):
    """How `scbloss train` starts: one process per GPU of every node, all sharing each global batch.
    Under the SLURM profile's multi-GPU jobs (resource `mpi`) SLURM starts them, one task per GPU (srun, which also
    spans nodes and ends the step when a rank dies); without a cluster, torchrun on this machine does."""
    nodes = int(getattr(resources, "nodes", 1) or 1)
    ranks = max(1, gpus_per_node(resources)) * nodes
    batch = experiments.train_config(config, RUNS[wildcards.run]).get("batch_size", 32)
    if batch % ranks:
        raise ValueError(
            f"run {wildcards.run}: batch_size {batch} is not divisible by its {ranks} GPUs "
            f"({gpus_per_node(resources)} per node x {nodes} nodes); each GPU takes batch / GPUs images"
        )
    if getattr(resources, "mpi", None):
        # the job step is spelled out: the SLURM plugin runs the rule with the allocation's SLURM_* variables removed
        cpus = int(getattr(resources, "cpus_per_task", 1) or 1)
        return (
            f"{resources.mpi} --kill-on-bad-exit=1 --nodes={nodes} --ntasks={ranks} "
            f"--ntasks-per-node={ranks // nodes} --gpus-per-task=1 --cpus-per-task={cpus} python -m scbloss"
        )
    if ranks > 1:
        return f"python -m torch.distributed.run --standalone --nproc-per-node={ranks} -m scbloss"
    return "python -m scbloss"


def dataset_args(family, split):
    """The reader arguments of one split of a dataset family, for `scbloss evaluate` and `match-stats`."""
    entry = experiments.dataset_entry(config, family, split)
    args = f"--dataset {entry['kind']} --root {entry['root']}"
    if entry.get("classes"):
        args += f" --classes {','.join(entry['classes'])}"
    if entry.get("annotations"):
        args += f" --annotations {entry['annotations']}"
    return args


def match_stats_entry(name):
    return next(e for e in FIGURES if match_stats_name(e) == name)


def match_stats_args(name):
    entry = match_stats_entry(name)
    augment = " --augment" if entry.get("augment") else ""
    return (
        f"{dataset_args(entry['dataset'], entry['split'])} --split {entry['split']} --model {entry['model']} "
        f"--priors {experiments.dataset_layout(config, entry['dataset'])} --recipe {entry['recipe']}{augment}"
    )


def show_matching_args(name):
    """`scbloss show-matching`'s arguments for one figure: its dataset, prior layout and recipe, scb's alpha and beta
    as the config trains the model, and the images: those holding the split's smallest object, its largest, and
    the most objects (the first in the split on a tie)."""
    entry = SHOW_MATCHING[name]
    scb = "".join(f" --{key} {entry[key]}" for key in ("alpha", "beta") if key in entry)
    return (
        f"{dataset_args(entry['dataset'], entry['split'])} --split {entry['split']} --model {entry['model']} "
        f"--priors {experiments.dataset_layout(config, entry['dataset'])} --recipe {entry['recipe']} "
        f"--weighting scb{scb} --image smallest-object --image largest-object --image most-objects"
    )

# The experiment matrix and the path helpers of every rules file. It imports no torch, so a dry-run of the
# paper's whole DAG parses in about two seconds.


import os
import re


from scbloss import experiments, pipeline

# Rules run `python -m scbloss`: the Python of their environment (the driver's venv, the --sdm conda env, the
# container) importing this checkout's src/, so the conda env needs only the pinned dependencies. Extra detector
# modules reach every job through the environment, as the package path does.
pipeline.expose_interpreter_scripts()
pipeline.expose_workflow_package(os.path.join(workflow.basedir, "src"))
pipeline.expose_detector_modules(config["detector_modules"])

RESULTS = config["results"]
SPECS = experiments.table_specs(config, os.path.join(workflow.basedir, "workflow", "schemas", "table.schema.yaml"))
SEEDS = config["seeds"]
RUNS = {run.id: run for run in experiments.runs_for_tables(SPECS, SEEDS)}
IMPORTED = config["metrics_dir"]  # metrics computed elsewhere: tables render from them, nothing trains
RUNS_DIR = IMPORTED or f"{RESULTS}/runs"
# The matching statistics read the datasets themselves, so tables rendered from imported metrics go without them.
FIGURES = [] if IMPORTED else experiments.figure_entries(config, RUNS.values())
TOY = all(config["data"][family]["source"] == "toy" for family in ("voc", "coco"))
ENV = "../../envs/scbloss.yaml"


wildcard_constraints:
    run="|".join(re.escape(r) for r in RUNS) or "no-runs",
    split="test|val",
    table="|".join(re.escape(spec["id"]) for spec in SPECS),


def dataset_marker(family):
    """A file that exists once a dataset family is ready to read."""
    source = config["data"][family]
    if source["source"] == "toy":
        return f"{source['root']}/toy.json"
    return f"{RESULTS}/data/{family}.ready"


def table_metrics(spec):
    """The metrics files one table reads: each of its runs on the table's split. Imported metrics are taken as
    they are: a run missing from metrics_dir renders as "not run" instead of failing."""
    files = {
        experiments.metrics_path(RUNS_DIR, experiments.row_run(spec, row, seed).id, spec["split"])
        for row in spec["rows"]
        for seed in range(SEEDS)
    }
    if IMPORTED:
        files = {path for path in files if os.path.exists(path)}
    return sorted(files)


def match_stats_name(entry):
    suffix = "-augmented" if entry.get("augment") else ""
    return f"{entry['dataset']}-{entry['model']}-{entry['split']}{suffix}"


def figure_outputs():
    return [f"{RESULTS}/figures/matching/{match_stats_name(e)}.png" for e in FIGURES]


def curve_outputs():
    return [] if IMPORTED else [f"{RESULTS}/figures/curves/{run_id}.png" for run_id in RUNS]


def test_dev_outputs():
    if IMPORTED or not config["evaluate"]["test_dev"]:
        return []
    return [
        f"{RESULTS}/runs/{r}/eval/test-dev/detections_test-dev2017_{r}_results.zip"
        for r, run in RUNS.items()
        if run.dataset == "coco"
    ]


def all_outputs():
    tables = [f"{RESULTS}/tables/{spec['id']}.{suffix}" for spec in SPECS for suffix in ("md", "tex", "csv")]
    return tables + [f"{RESULTS}/tables/summary.md"] + figure_outputs() + curve_outputs() + test_dev_outputs()


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


def dataset_args(family):
    kind, root = experiments.dataset_location(config, family)
    return f"--dataset {kind} --root {root}"


def match_stats_args(name):
    entry = next(e for e in FIGURES if match_stats_name(e) == name)
    augment = " --augment" if entry.get("augment") else ""
    return (
        f"{dataset_args(entry['dataset'])} --split {entry['split']} --model {entry['model']} "
        f"--priors {entry['dataset']}{augment}"
    )

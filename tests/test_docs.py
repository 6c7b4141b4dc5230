"""The pages a newcomer reads first cannot drift from what runs.

Every shell block (```sh, bash, console, shell) of README.md and docs/*.md is either run here, in a scratch copy
of the checkout (its folders linked, every output in tmp_path, Snakemake's profile folder in tmp_path too) and as
a dry-run where a full run is too long, or listed in NOT_RUN with the reason it cannot run here; a block that is
neither fails, and so does an entry whose block is gone. Blocks are known by page and exact text, so changing a
command means looking at how it is tested. config/README.md names every key of the config schema, of the train
config and of the SLURM site file, and states the schema's defaults. Python blocks parse and their scbloss imports
resolve; relative links and their anchors exist.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "console", "shell"}
# What the scratch copy links from the checkout; outputs (results/, data/, .snakemake/) stay in the copy.
LINKED = ["Snakefile", "workflow", "config", "paper_tables", "profiles", "src", "envs", "docs", "tests", "benchmarks"]
LINKED_FILES = ["pyproject.toml"]
PROFILE_LINK = (
    'mkdir -p "$XDG_CONFIG_HOME/snakemake" && ln -sfn "$PWD/profiles/slurm" "$XDG_CONFIG_HOME/snakemake/slurm"'
)
MAIN_INSTALL = (
    "python3 -m venv .venv && .venv/bin/pip install -c envs/requirements.txt -c envs/workflow.txt -e '.[workflow]' && "
)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S)]


def shell_blocks() -> list[tuple[str, str]]:
    """(page, text) of every shell block of the pages, text without its final newline."""
    found = []
    for page in PAGES:
        for language, body in fenced_blocks((REPO / page).read_text()):
            if language in SHELL:
                found.append((page, body.rstrip("\n")))
    return found


@dataclass(frozen=True)
class Run:
    """How a block runs here: ``edits`` (old, new) turn it into a dry-run where a full run is too long (each old
    must occur), ``setup`` runs first in the same scratch copy, ``expect`` must appear in the output, ``stand_in``
    puts tests/container (an apptainer stand-in) first on PATH. ``slow``: 3-8 s on this 2-core machine when it is
    busy (every block that starts Snakemake), left out of the fast tier (`pytest -m "not slow"`)."""

    edits: tuple[tuple[str, str], ...] = ()
    setup: str = ""
    expect: str = ""
    stand_in: bool = False
    slow: bool = False


DRY = "This was a dry-run"

# Blocks run here, in the order of the pages.
RUN: list[tuple[str, str, Run]] = [
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install -c envs/requirements.txt -c envs/workflow.txt -e "
        "'.[workflow]' && .venv/bin/snakemake --cores all",
        # The install is the test command's own (CI runs it); the same DAG runs in test_workflow.py's toy_pipeline
        # fixture, at a fifth of the images and iterations. Here: the DAG this command runs, as a dry-run.
        Run(edits=((MAIN_INSTALL, ""), ("snakemake --cores all", "snakemake -n --cores all")), expect=DRY, slow=True),
    ),
    (
        "docs/cluster.md",
        'mkdir -p "${XDG_CONFIG_HOME:-$HOME/.config}/snakemake" && ln -sfn "$PWD/profiles/slurm" '
        '"${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm"\n'
        ".venv/bin/snakemake --profile slurm --configfile config/paper.yaml",
        # the link in a config home of this test's own, then the run through the profile by name, as a dry-run
        Run(edits=(("snakemake --profile slurm", "snakemake -n --profile slurm"),), expect=DRY, slow=True),
    ),
    (
        "docs/cluster.md",
        ".venv/bin/snakemake --cores 1 --configfile config/paper.yaml --config metrics_dir=path/to/runs",
        # rendering for real is test_workflow.py::test_tables_render_from_imported_metrics_without_training
        Run(edits=(("snakemake --cores 1", "snakemake -n --cores 1"),), expect="rule table", slow=True),
    ),
    (
        "docs/containers.md",
        ".venv/bin/snakemake --profile slurm --configfile config/paper.yaml --sdm apptainer \\\n"
        '  --config container=docker://ghcr.io/YOUR_USER/scbloss:0.1.0 --apptainer-args="--nv"',
        # Snakemake looks for an apptainer binary even in a dry-run: the stand-in CI uses answers --version
        Run(
            edits=(("snakemake --profile slurm", "snakemake -n --profile slurm"),),
            setup=PROFILE_LINK,
            expect="docker://ghcr.io/YOUR_USER/scbloss:0.1.0 will be pulled",
            stand_in=True,
            slow=True,
        ),
    ),
    (
        "docs/conventions.md",
        ".venv/bin/python -m scbloss data toy --out data/toy --images 40 --test-images 20\n"
        ".venv/bin/python -m scbloss data check data/toy",
        Run(expect="toy_coco/val: 20 images"),
    ),
    (
        "docs/getting-started.md",
        ".venv/bin/snakemake -n\n.venv/bin/snakemake -n --configfile config/paper.yaml",
        Run(expect=DRY, slow=True),
    ),
    (
        "docs/getting-started.md",
        ".venv/bin/snakemake plan -c1 --configfile config/paper.yaml",
        Run(expect="GPU-h of training", slow=True),
    ),
    (
        "docs/getting-started.md",
        ".venv/bin/python -m scbloss data toy --out data/toy --images 40 --test-images 20\n"
        ".venv/bin/python -m scbloss show-matching --dataset toy_voc --root data/toy --split test --model ssd300 \\\n"
        "  --image smallest-object --image 0 --out results/show-matching/voc-ssd300",
        Run(expect="results/show-matching/voc-ssd300.png", slow=True),
    ),
    (
        "docs/your-data.md",
        ".venv/bin/python -m scbloss data check data/shapes/VOCdevkit/VOC2007\n"
        ".venv/bin/python -m scbloss data check data/shapes/coco/val2017 "
        "--annotations data/shapes/coco/annotations/instances_val2017.json",
        Run(setup=".venv/bin/python -m scbloss data toy --out data/shapes --images 12 --test-images 6"),
    ),
    (
        "docs/your-data.md",
        ".venv/bin/python -m scbloss data toy --out data/shapes --images 320 --test-images 120 && "
        ".venv/bin/snakemake --cores all --configfile config/custom.example.yaml",
        # The DAG takes 18.5 minutes on 2 cores (the page's measured table): a dry-run, over a folder written for
        # real by the same command with fewer images (the jobs do not depend on how many).
        Run(
            edits=(
                ("--images 320 --test-images 120", "--images 12 --test-images 6"),
                ("snakemake --cores all", "snakemake -n --cores all"),
            ),
            expect="custom_data",
            slow=True,
        ),
    ),
]
# Blocks not run here, each with the reason and where it does run.
NOT_RUN: dict[tuple[str, str], str] = {
    (
        "README.md",
        "bash tests/slurm/cluster.sh install && bash tests/container/build.sh install && "
        "bash tests/report/browser.sh install && python3 -m venv .venv && "
        ".venv/bin/pip install -c envs/requirements.txt -c envs/workflow.txt -e '.[test]' && .venv/bin/ruff check . "
        "&& .venv/bin/ruff format --check . && .venv/bin/snakefmt --check . && .venv/bin/pytest",
    ): "the test command: CI runs exactly this block as .ci/run (test_the_ci_entry_point_runs_the_readme_block "
    "checks it extracts this text), and it runs this file",
    (
        "README.md",
        '.venv/bin/pytest -m "not slow"',
    ): "the fast tier runs every unit test, this file included; the test command's full pytest is its superset",
    (
        "docs/getting-started.md",
        ".venv/bin/snakemake --report report.zip",
    ): "needs a finished pipeline: test_workflow.py::test_report_gathers_tables_and_figures makes the report after "
    "the toy pipeline",
    (
        "docs/cluster.md",
        "SCBLOSS_TEST_WHOLE_DAG_ON_SLURM=1 .venv/bin/pytest tests/test_slurm.py",
    ): "needs root and Debian's slurm and munge (the test command installs them) and 20 minutes; CI runs "
    "tests/test_slurm.py, the reduced pipeline through the cluster, through the test command",
    (
        "docs/cluster.md",
        ".venv/bin/python -m scbloss evaluate --checkpoint torchvision_coco --dataset coco --root data/coco "
        "--split val --out results/torchvision-ssd300",
    ): "needs COCO val2017 under data/coco and torchvision's published weights (downloads); "
    "test_torchvision_ssd.py::test_torchvisions_published_model_is_evaluated_with_one_command runs it on stand-ins",
    (
        "docs/getting-started.md",
        ".venv/bin/python -m scbloss detect --checkpoint torchvision_coco --out results/detect --score 0.5 photos/",
    ): "downloads torchvision's published weights and needs a photos/ folder; test_detect.py runs the command on "
    "a small model file and images it writes",
    (
        "docs/containers.md",
        "podman build -f envs/Dockerfile -t scbloss:0.1.0 .        # or docker build; from the repository root\n"
        "podman tag scbloss:0.1.0 ghcr.io/YOUR_USER/scbloss:0.1.0\n"
        "podman login ghcr.io && podman push ghcr.io/YOUR_USER/scbloss:0.1.0",
    ): "podman build needs root and podman, 4 minutes and 6 GB (tests/test_container.py builds the same Dockerfile "
    "in CI); podman login and push need a registry account",
    (
        "docs/containers.md",
        "bash tests/container/build.sh build scbloss:0.1.0\n"
        "bash tests/container/build.sh run scbloss:0.1.0 -- python -m scbloss --help\n"
        "bash tests/container/build.sh clean scbloss:0.1.0",
    ): "needs root and podman; tests/test_container.py runs build.sh build, run -- python -m scbloss --help, and "
    "clean in CI",
    (
        "docs/extending.md",
        ".venv/bin/python docs/examples/retinanet_scb.py --iterations 5",
    ): "71 s on 2 cores; test_integrations.py::test_the_retinanet_example_trains_on_the_toy_data runs this script "
    "with --iterations 2",
    (
        "docs/conventions.md",
        ".venv/bin/python -m scbloss data download --dataset voc --root data",
    ): "downloads about 2.8 GB from the official hosts; test_download.py runs the download, resume and extraction "
    "against a local HTTP mirror",
    (
        "docs/conventions.md",
        ".venv/bin/python benchmarks/run.py          # --quick for shorter timing windows",
    ): "minutes of timing (more than 80 s on 2 cores even with --quick --no-detectors); speed targets are kept out "
    "of tests by design (benchmarks/README.md)",
    (
        "docs/conventions.md",
        ".venv/bin/python benchmarks/gpu.py --quick",
    ): "measures GPU training rates: needs a GPU; benchmarks/README.md records its output",
}


@pytest.fixture
def scratch(tmp_path):
    """A scratch copy of the checkout (its folders linked) and the environment its commands run in."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in LINKED + LINKED_FILES:
        (checkout / name).symlink_to(REPO / name)
    venv = REPO / ".venv" if (REPO / ".venv").exists() else Path(sys.prefix)
    (checkout / ".venv").symlink_to(venv)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config-home")}
    env.pop("SCBLOSS_SLURM_SITE", None)
    return checkout, env


def _bash(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_id(entry: tuple[str, str, Run]) -> str:
    page, text, _ = entry
    return f"{Path(page).stem}:{' '.join(text.split()[:4])}"


def test_every_shell_block_is_run_or_listed():
    blocks = shell_blocks()
    known = {(page, text) for page, text, _ in RUN} | set(NOT_RUN)
    unlisted = [f"{page}:\n{text}" for page, text in blocks if (page, text) not in known]
    assert not unlisted, "shell blocks neither run by tests/test_docs.py nor listed in its NOT_RUN:\n\n" + "\n\n".join(
        unlisted
    )
    gone = sorted(known - set(blocks))
    assert not gone, f"tests/test_docs.py lists blocks no page has any more: {gone}"
    assert not set(NOT_RUN) & {(page, text) for page, text, _ in RUN}


def test_shell_blocks_hold_commands_not_synopses():
    """Usage synopses (`[--mirror URL | --existing DIR]`) go in ```text blocks: a shell block is run as written."""
    for page, text in shell_blocks():
        assert not re.search(r"\[[^\]\n]*(--|\|)[^\]\n]*\]", text), f"{page}: a synopsis in a shell block:\n{text}"


@pytest.mark.parametrize(
    "page, text, run",
    [pytest.param(*entry, id=_run_id(entry), marks=[pytest.mark.slow] if entry[2].slow else []) for entry in RUN],
)
def test_shell_block_runs(page, text, run, scratch):
    checkout, env = scratch
    command = text
    for old, new in run.edits:
        assert old in command, f"{page}: the block no longer contains {old!r}; update RUN in tests/test_docs.py"
        command = command.replace(old, new)
    if run.stand_in:
        env["PATH"] = f"{REPO / 'tests' / 'container'}{os.pathsep}{env['PATH']}"
    if run.setup:
        setup = _bash(run.setup, checkout, env)
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    result = _bash(command, checkout, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{page}: `{command}` failed:\n{output[-5000:]}"
    assert run.expect in output, f"{page}: `{command}` did not print {run.expect!r}:\n{output[-5000:]}"


def test_the_profile_set_up_block_links_the_profile_by_name(scratch):
    """The block tests/test_slurm.py runs (first line, after <!-- profile-setup -->) makes `--profile slurm`
    name this checkout's profile, in the config home given."""
    checkout, env = scratch
    text = (REPO / "docs" / "cluster.md").read_text()
    setup = text[text.index("<!-- profile-setup -->") :].split("```sh\n", 1)[1].splitlines()[0]
    assert _bash(setup, checkout, env).returncode == 0
    link = Path(env["XDG_CONFIG_HOME"]) / "snakemake" / "slurm"
    assert link.resolve() == (REPO / "profiles" / "slurm").resolve()


def test_the_readme_keeps_its_two_set_up_commands_and_its_length():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert text.count(marker) == 1, marker
        assert text.split(marker, 1)[1].startswith("\n```sh\n"), f"{marker} must be followed by a ```sh block"
    setup_blocks = [body for page, body in shell_blocks() if page == "README.md" and "python3 -m venv" in body]
    assert len(setup_blocks) == 2  # exactly two set-up commands for a fresh machine


def test_the_ci_entry_point_runs_the_readme_block():
    """.ci/run extracts the block after <!-- test-command --> with awk: the same text this file lists."""
    script = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"awk '([^']*)' README.md", script).group(1)
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=REPO, capture_output=True, text=True, check=True)
    assert ("README.md", extracted.stdout.rstrip("\n")) in NOT_RUN


def test_python_blocks_parse_and_their_imports_resolve():
    for page in PAGES:
        for language, body in fenced_blocks((REPO / page).read_text()):
            if language != "python":
                continue
            tree = ast.parse(body, filename=page)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "scbloss":
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{page}: {node.module} has no {alias.name}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [*PAGES, "config/README.md"])
def test_relative_links_and_anchors_exist(page):
    source = REPO / page
    text = re.sub(r"^```.*?^```", "", source.read_text(), flags=re.M | re.S)
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
        if re.match(r"\w+://", target):
            continue
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{page}: link to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page}: {target}#{anchor}: no such heading"


# config/README.md -----------------------------------------------------------------------------------------------

CONFIG_README = REPO / "config" / "README.md"


def _sections() -> dict[str, str]:
    """config/README.md's level-2 sections by heading (level-3 ones stay inside theirs)."""
    parts = re.split(r"^## (.+)$", CONFIG_README.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _section(top: str | None) -> tuple[str, str]:
    """The section that documents the top-level key ``top`` (None: the table of top-level keys)."""
    for heading, body in _sections().items():
        if (top is None and heading == "Top-level keys") or (top is not None and f"`{top}`" in heading):
            return heading, body
    raise AssertionError(f"config/README.md has no section for {'the top-level keys' if top is None else top}")


def _names(body: str, key: str) -> bool:
    """Whether ``key`` is named in one of the section's code spans."""
    return any(re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", span) for span in re.findall(r"`([^`\n]+)`", body))


def _defaults_column(body: str) -> dict[str, str]:
    """key -> its default cell, from every table of a section that has a `default` column."""
    cells = {}
    column = None
    for line in body.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        row = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if column is None:
            column = row.index("default") if "default" in row else -1
        elif column >= 0 and re.fullmatch(r"`[\w.]+`", row[0]) and len(row) > column:
            cells[row[0].strip("`")] = row[column]
    return cells


def _cell_value(cell: str):
    cell = cell.strip("`")
    if cell == "required":
        return dataclasses.MISSING
    if re.fullmatch(r"\d+/\d+", cell):
        return float(Fraction(cell))
    return yaml.safe_load(cell)


def _same(documented, actual) -> bool:
    if isinstance(actual, float) and isinstance(documented, (int, float)) and not isinstance(documented, bool):
        return math.isclose(documented, actual)
    return documented == actual


def _schema_keys(node: dict, schema: dict, path: tuple = ()):
    """(path, schema) of every key below ``node``; ``*`` stands for a name of your choice, ``[]`` for a list item."""
    if "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    for key, sub in node.get("properties", {}).items():
        yield (*path, key), sub
        yield from _schema_keys(sub, schema, (*path, key))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_keys(node["additionalProperties"], schema, (*path, "*"))
    if isinstance(node.get("items"), dict):
        yield from _schema_keys(node["items"], schema, (*path, "[]"))


def test_config_readme_names_every_schema_key_with_its_default():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    missing, wrong = [], []
    keys = list(_schema_keys(schema, schema))
    assert len(keys) > 60  # the walk found the nested objects
    for path, sub in keys:
        key = path[-1]
        if key in ("*", "[]"):
            continue
        heading, body = _section(None if len(path) == 1 else path[0])
        if not _names(body, key):
            missing.append(".".join(path))
            continue
        if "default" in sub and key in (defaults := _defaults_column(body)):
            if not _same(_cell_value(defaults[key]), sub["default"]):
                wrong.append(f"{'.'.join(path)}: documented {defaults[key]}, schema {sub['default']!r}")
    assert not missing, f"config/README.md does not name: {missing}"
    assert not wrong, f"config/README.md states other defaults than the schema: {wrong}"


def test_config_readme_names_every_train_key_with_its_default():
    from scbloss.engine.config import TrainConfig

    _, body = _section("train")
    defaults = _defaults_column(body)
    for field in dataclasses.fields(TrainConfig):
        assert field.name in defaults, f"config/README.md's train section has no row for {field.name}"
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        documented = _cell_value(defaults[field.name])
        assert _same(documented, default), f"train.{field.name}: documented {defaults[field.name]}, is {default!r}"


def test_config_readme_names_every_site_key():
    site = yaml.safe_load((REPO / "profiles" / "slurm" / "site.yaml").read_text())
    _, body = _section("profiles/slurm/site.yaml")

    def keys(mapping, path=()):
        for key, value in mapping.items():
            yield (*path, key)
            if isinstance(value, dict):
                yield from keys(value, (*path, key))

    missing = [".".join(path) for path in keys(site) if not _names(body, path[-1])]
    assert not missing, f"config/README.md's site.yaml section does not name: {missing}"

"""The experiment matrix: which training runs the requested tables need, and each run's full training config.

Every table file in ``paper_tables/`` names, row by row, the run behind it (dataset family x model x weighting
[x variant]); the matrix is the union over the requested tables, times the configured number of seeds, so a run
that several tables use is trained once. :mod:`.specs` reads the tables, :mod:`.matrix` derives the runs,
:mod:`.run_config` composes each run's config and :mod:`.planning` estimates their GPU-hours. Nothing in this
package imports torch: the workflow parses with it.
"""

from .matrix import (
    Run,
    earlier_stage,
    eval_splits,
    figure_entries,
    metrics_path,
    row_run,
    runs_for_tables,
    show_matching_entries,
    table_seeds,
    with_earlier_stages,
)
from .planning import gpu_hours, gpus_per_run, plan, training_rate
from .run_config import (
    check_train_block,
    checked_train_config,
    dataset_entry,
    dataset_layout,
    test_split,
    toy_datasets,
    train_config,
    train_split,
)
from .specs import TableSpecError, comparison_specs, load_table_spec, table_specs

__all__ = [
    "Run",
    "check_train_block",
    "checked_train_config",
    "TableSpecError",
    "comparison_specs",
    "dataset_entry",
    "dataset_layout",
    "earlier_stage",
    "eval_splits",
    "figure_entries",
    "gpu_hours",
    "gpus_per_run",
    "load_table_spec",
    "metrics_path",
    "plan",
    "row_run",
    "runs_for_tables",
    "show_matching_entries",
    "table_seeds",
    "table_specs",
    "test_split",
    "toy_datasets",
    "train_config",
    "train_split",
    "with_earlier_stages",
    "training_rate",
]

r"""Action spread, clip fraction, returns and normalised score of datasets made by launch.make_dataset.

Example (the figures in docs/datasets.md):
    python -m launch.dataset_stats --dataset_ids=local/hopper/medium-v0,local/hopper/medium-v1 \
        --states=2000 --samples=256 --seed=0

Per-state action std: at --states dataset states, --samples actions are drawn
as the dataset's own recipe draws them (data/spread.py), and their std is
averaged over states; "overall" is the mean over action dimensions.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from errors import UserFacingError
from launch import cli

FLAGS = flags.FLAGS
flags.DEFINE_list("dataset_ids", None, "Comma-separated Minari ids of datasets made by launch.make_dataset.")
flags.DEFINE_integer("states", 2000, "Dataset states at which the action spread is estimated.")
flags.DEFINE_integer("samples", 256, "Actions drawn per state.")
flags.DEFINE_integer("seed", 0, "Seed for the choice of states and the drawn actions.")
flags.DEFINE_integer("threads", 1, "torch threads.")
flags.DEFINE_string("json_out", None, "Also write the full results as JSON here.")
flags.mark_flag_as_required("dataset_ids")


def main(argv):
    del argv
    import torch

    from data.spread import TABLE_HEADER, format_row, measure_dataset

    torch.set_num_threads(FLAGS.threads)
    try:
        results = [measure_dataset(d, FLAGS.states, FLAGS.samples, FLAGS.seed) for d in FLAGS.dataset_ids]
    except UserFacingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(TABLE_HEADER)
    for r in results:
        print(format_row(r))
    for r in results:
        print(json.dumps(r))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    cli.run(main)

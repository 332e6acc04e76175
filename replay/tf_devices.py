"""TensorFlow never takes the GPU; torch keeps it.

The pinned TensorFlow (Reverb needs it) is a CUDA build: in a process that sees a GPU, its first
operation (Reverb's tf.data pipeline in the learner) maps nearly all of that GPU's memory before
torch asks for any. Reverb needs only the CPU, so the replay modules import it through
`import_reverb()`, which first hides the GPUs from TensorFlow; that works only before TensorFlow's
first operation in the process, and is harmless on a machine without a GPU. Child processes that
run on the CPU alone (actors, evaluator) are also started with CUDA_VISIBLE_DEVICES="" by the
supervisor (launch/finetune.py), so neither library touches the GPU there.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)
_hidden = False


def hide_gpus_from_tensorflow() -> None:
    """Make TensorFlow see no GPU in this process (once; a no-op on later calls)."""
    global _hidden
    if _hidden:
        return
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as e:      # TensorFlow already ran an operation in this process
        if tf.config.get_visible_devices("GPU"):
            logger.warning("TensorFlow started before the GPU could be hidden from it and may hold GPU "
                           "memory that torch needs (%s)", e)
    _hidden = True


def import_tensorflow():
    hide_gpus_from_tensorflow()
    import tensorflow as tf
    return tf


def import_reverb():
    hide_gpus_from_tensorflow()
    import reverb
    return reverb

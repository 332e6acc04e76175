"""Replay channel between CPU actors and the learner (Reverb).

Nothing here imports Reverb or TensorFlow: the offline learner imports this
package (for names and types) and must start without TensorFlow. Import the
submodules (`replay.server`, `replay.writer`, `replay.sampler`,
`replay.weights`) where the online pieces are actually used; they pull in
Reverb and so TensorFlow (seconds of start-up).
"""

import os

# Reverb imports TensorFlow, whose CUDA build logs "Unable to register cuDNN/cuFFT/cuBLAS factory" at
# ERROR level on every import, GPU or not: harmless, but read as failures on a CPU run's console.
# Silenced here, before any submodule imports Reverb; set TF_CPP_MIN_LOG_LEVEL yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ONLINE_TABLE = "online"
WEIGHTS_TABLE = "weights"
TRANSITION_FIELDS = ("observation", "action", "reward", "next_observation", "discount")

__all__ = ["ONLINE_TABLE", "WEIGHTS_TABLE", "TRANSITION_FIELDS"]

"""Replay channel between CPU actors and the learner (Reverb).

Nothing here imports Reverb or TensorFlow: the offline learner imports this
package (for names and types) and must start without TensorFlow. Import the
submodules (`replay.server`, `replay.writer`, `replay.sampler`,
`replay.weights`) where the online pieces are actually used; they pull in
Reverb and so TensorFlow (seconds of start-up).
"""

ONLINE_TABLE = "online"
WEIGHTS_TABLE = "weights"
TRANSITION_FIELDS = ("observation", "action", "reward", "next_observation", "discount")

__all__ = ["ONLINE_TABLE", "WEIGHTS_TABLE", "TRANSITION_FIELDS"]

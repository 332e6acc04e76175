"""A stand-in role for tests/test_ray_launcher.py: reads the run's files where it runs, writes log rows."""
import json
import os
import stat
import sys
import time
from pathlib import Path

run_dir = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--run_dir=")))
config = json.loads((run_dir / "config.json").read_text())
mode = stat.S_IMODE(os.stat(run_dir / "run_key").st_mode)
with open(run_dir / "logs" / "probe.jsonl", "a") as f:
    for i in range(3):
        f.write(json.dumps({"i": i, "run_dir": str(run_dir), "config": config, "key_mode": mode}) + "\n")
print("probe done", flush=True)
code = [int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--exit_code=")]
if code:                  # a role that fails, for the restart test; it lives long enough for the driver's polls
    time.sleep(8)         # to see every life and ship its rows, even on a loaded machine
    sys.exit(code[0])

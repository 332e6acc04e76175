"""PointMaze behaviour policy: grid planner + noisy PD controller, D4RL's maze2d recipe.

D4RL made its maze2d data without any learned policy (Fu et al. 2020, section 5,
"Maze2D"; d4rl/pointmaze/q_iteration.py and waypoint_controller.py), and Minari
re-made it the same way for gymnasium-robotics' PointMaze (the D4RL/pointmaze
datasets; minari-dataset-generation-scripts, scripts/pointmaze/maze_solver.py and
controller.py, and Minari's tutorial docs/tutorials/dataset_creation/point_maze_dataset.py):

* **Planner.** The maze is a grid of cells. Q-value iteration over the cells
  (4 moves, a move into a wall stays put, reward 1 for entering the goal cell,
  γ = 0.99, 50 sweeps) gives from every cell the shortest route to the goal
  cell; the route's cells are the waypoints.
* **Controller.** A PD law a = clip(10·(w − x) − 1·v, −1, 1) drives the point
  mass (position x, velocity v) to the current waypoint w, moving on to the
  next one once within 0.1 of it. Intermediate waypoints are cell centres
  shifted by −U(0, 0.2) per axis (as Minari's controller does, to vary the
  paths); the last waypoint is the goal position itself.

The dataset maker (data/pointmaze.py) adds Gaussian action noise on top;
without noise this controller is the "expert" of the reference score.
Written from the recipe above, not copied; randomness comes only from the
numpy Generator passed in, so a seed reproduces every action.
"""
from __future__ import annotations

import numpy as np

MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])   # (drow, dcol): up, down, left, right in the grid
DISCOUNT, SWEEPS = 0.99, 50                            # D4RL q_iteration.py
P_GAIN, D_GAIN, WAYPOINT_RADIUS, JITTER = 10.0, -1.0, 0.1, 0.2


class GridPlanner:
    """Shortest routes between cells of a maze map (1 = wall) by Q-value iteration."""

    def __init__(self, maze_map):
        walls = np.array([[c == 1 for c in row] for row in maze_map], dtype=bool)
        self.rows, self.cols = walls.shape
        self.walls = walls
        r, c = np.divmod(np.arange(self.rows * self.cols), self.cols)
        nr, nc = r[:, None] + MOVES[:, 0], c[:, None] + MOVES[:, 1]
        inside = (nr >= 0) & (nr < self.rows) & (nc >= 0) & (nc < self.cols)
        nr, nc = np.where(inside, nr, r[:, None]), np.where(inside, nc, c[:, None])
        blocked = walls[nr, nc]
        # next_state[s, a]: the cell a move leads to; into a wall (or off the map) it stays put
        self.next_state = np.where(blocked, np.arange(r.size)[:, None], nr * self.cols + nc)
        self._q: dict[int, np.ndarray] = {}

    def q_values(self, goal: int) -> np.ndarray:
        if goal not in self._q:
            reward = (self.next_state == goal).astype(np.float64)
            q = np.zeros_like(reward)
            for _ in range(SWEEPS):
                q = reward + DISCOUNT * q.max(axis=1)[self.next_state]
            self._q[goal] = q
        return self._q[goal]

    def route(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells after ``start`` up to and including ``goal`` (empty when already there)."""
        s, g = start[0] * self.cols + start[1], goal[0] * self.cols + goal[1]
        q = self.q_values(g)
        cells: list[tuple[int, int]] = []
        for _ in range(self.rows * self.cols):
            if s == g:
                return cells
            s = int(self.next_state[s, int(np.argmax(q[s]))])
            cells.append(divmod(s, self.cols))
        return []   # unreachable (start inside a wall): steer straight at the goal instead


class WaypointController:
    """PD control along the planner's route; ``act(obs)`` takes PointMaze's dict observation."""

    def __init__(self, maze, rng: np.random.Generator, jitter: float = JITTER):
        self.maze = maze                 # gymnasium_robotics Maze: cell <-> xy conversions and the map
        self.planner = GridPlanner(maze.maze_map)
        self.rng = rng
        self.jitter = float(jitter)
        self.goal = None
        self.waypoints: list[np.ndarray] = []
        self.k = 0

    def _cell(self, xy) -> tuple[int, int]:
        i, j = self.maze.cell_xy_to_rowcol(np.asarray(xy))
        return int(i), int(j)

    def plan(self, position, goal) -> None:
        """New route from ``position`` to ``goal`` (called whenever the goal changes)."""
        self.goal = np.array(goal, dtype=np.float64)
        cells = self.planner.route(self._cell(position), self._cell(goal))
        self.waypoints = [self.maze.cell_rowcol_to_xy(np.array(c)) - self.jitter * self.rng.uniform(size=2)
                          for c in cells[:-1]] + [self.goal.copy()]
        self.k = 0

    def act(self, obs) -> np.ndarray:
        position, velocity = obs["achieved_goal"], obs["observation"][2:4]
        if self.goal is None or np.linalg.norm(self.goal - obs["desired_goal"]) > 1e-3:
            self.plan(position, obs["desired_goal"])
        if self.k < len(self.waypoints) - 1 and np.linalg.norm(self.waypoints[self.k] - position) <= WAYPOINT_RADIUS:
            self.k += 1
        action = P_GAIN * (self.waypoints[self.k] - position) + D_GAIN * velocity
        return np.clip(action, -1.0, 1.0)


__all__ = ["GridPlanner", "WaypointController"]

"""bellmax on Ray (the `ray` extra; nothing else in bellmax imports Ray).

- `space.py`: what a sweep varies: grids, ranges to sample from, a search-space file; parsed and
  checked against the algorithm's Config before Ray starts.
- `sweep.py`: `run_sweep`: every (setting, seed) an ordinary run directory trained by a Ray Tune
  trial, grid or random or Optuna search, ASHA early stopping, resume; `summarize`: the results
  table, the best setting as a preset file, one learning-curve figure per setting.
"""

"""What the tests share, in one package (on sys.path through pytest's `pythonpath = ["tests"]`; a cell
subprocess that imports from it gets `tests/` on PYTHONPATH, e.g. through `paths.tests_env`).

- `paths`: the repository, tests/ and the real sample files under shared/data.
- `cli`: the real CLI in a subprocess (`run_cli`) and in-process (`run_main`).
- `configs`: a run config that trains in seconds on CPU.
- `datasets`: tiny dataset folders in the official archives' on-disk formats.
- `synthetic_runs`: results trees with known numbers (run folders without training).
- `standin`, `tune_standin`: trainer stand-ins that honour the run-folder contract (sweep and tune machinery).
- `sweeps`, `slurm`, `tune`: sweep files, the local SLURM cluster fixture and waits, tune specs and checks.
- `trackers`: read what TensorBoard, MLflow and W&B wrote.
- `distributed_cases`: the worker side of the data-parallel tests.
"""

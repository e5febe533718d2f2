"""Using what training made: tuned-weight folders (tuned.py), a model from a run or a tuned folder
(trained.py), many tasks on one backbone (tasks.py), prediction (predict.py) and export (export.py)."""

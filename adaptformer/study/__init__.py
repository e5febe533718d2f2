"""Studies: several training stages run from one YAML file with seeds and sweeps (run.py), their
report (report.py) and the paired statistics it uses (stats.py)."""

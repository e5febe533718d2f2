"""Figures: one style for every plot (figures.py), a run's curves and test grids (run_figures.py),
a prediction's picture (predict_plot.py)."""

"""What run_all.sh and the notebooks import: stack control, experiments, plots and the report."""

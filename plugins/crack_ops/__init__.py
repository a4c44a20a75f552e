"""Airflow pieces for the crack workflow: store hook, new-batch sensor, gate operator, Assets, ops view.

Installed with the ``crack-model`` distribution; Airflow loads ``crack_ops.plugin`` through the
``airflow.plugins`` entry point. Imports nothing itself: the DAGs import the modules they use.
"""

"""Airflow pieces for the crack workflow: store hook, new-batch sensor, gate operator, ops view."""

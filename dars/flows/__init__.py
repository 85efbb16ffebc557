"""Prefect flows of the DAG. Importing this package (what a deployment does) applies the offline
environment defaults of :mod:`dars.env` before Prefect or litellm read their settings."""

from dars.env import apply_offline_defaults

apply_offline_defaults()

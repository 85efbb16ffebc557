"""Suite-wide setup: the test suite is an entry point, so it applies the offline environment
defaults (:mod:`dars.env`) before any test imports litellm, Prefect or Hugging Face."""

from dars.env import apply_offline_defaults

apply_offline_defaults()

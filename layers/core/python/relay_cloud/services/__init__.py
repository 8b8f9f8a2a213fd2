"""Use cases: one function or small class per action; ports are passed in, never imported."""

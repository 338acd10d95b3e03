"""The DVC pipeline: settings, dvc.yaml and stamps, stage bodies, shards, executors, progress, plan."""

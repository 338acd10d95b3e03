"""Hydra resolver `${taskspace_runs:${models}}`: params.yaml's `runs` (one entry per model × revision, what
dvc.yaml's per-run stages iterate over), derived from `models` whenever DVC composes params.yaml with Hydra
(`dvc exp run`). DVC imports this package through `hydra.plugins_path = conf` in .dvc/config."""

from omegaconf import OmegaConf


def _runs(models):
    from taskspace.runs import expand_runs

    # a DictConfig, not a dict: OmegaConf.resolve only puts a container in place of an interpolation
    return OmegaConf.create(expand_runs(OmegaConf.to_container(models, resolve=True)))


OmegaConf.register_new_resolver("taskspace_runs", _runs, replace=True)

"""Hydra resolvers `${taskspace_runs:${models}}` and `${taskspace_data_files:${data.source}}`: params.yaml's
`runs` (one entry per model × revision, what dvc.yaml's per-run stages iterate over) and `data_files` (what the
prepare stage reads), derived whenever DVC composes params.yaml with Hydra (`dvc exp run`). DVC imports this
package through `hydra.plugins_path = conf` in .dvc/config."""

from omegaconf import OmegaConf


def _runs(models):
    from taskspace.runs import expand_runs

    # a DictConfig, not a dict: OmegaConf.resolve only puts a container in place of an interpolation
    return OmegaConf.create(expand_runs(OmegaConf.to_container(models, resolve=True)))


def _data_files(source):
    from taskspace.blimp.data import source_files

    return source_files(str(source))


OmegaConf.register_new_resolver("taskspace_runs", _runs, replace=True)
OmegaConf.register_new_resolver("taskspace_data_files", _data_files, replace=True)

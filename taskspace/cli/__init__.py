"""`taskspace` command line: each verb is a thin shell over the library, used by people and DVC stages.

`common` holds the consoles, one-line errors and the option groups that build the library's config objects;
`tables` the result tables; `science` the commands on models and data; `project` those on the pipeline;
`export` figures, CSV and reports from the index.

Conventions: `-h` is `--help` everywhere (the main group's context settings, which every subcommand inherits);
an option with a closed set of values is a `click.Choice` over the library's own tuple; every option has help;
exit code 1 for an error explained in one line (`common.friendly_errors`), 2 for a usage error (click's);
`stage` (the DVC stage bodies) is hidden from `taskspace --help`. Shell completion is click's:
`eval "$(_TASKSPACE_COMPLETE=bash_source taskspace)"`.
"""

from __future__ import annotations

import click

from taskspace.cli import export, project, science


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskspace")
def main() -> None:
    """Linguistic task spaces over BLiMP: score, fine-tune (FTGD), probe, analyse, index, explore."""


for _command in (
    science.score,
    science.make_tiny,
    science.ftgd,
    science.probe,
    science.analyze,
    project.check,
    project.stage,
    project.plan,
    project.index,
    project.metrics,
    project.exps,
    project.resume,
    export.export,
    project.tui,
):
    main.add_command(_command)

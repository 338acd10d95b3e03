"""`taskspace` command line: each verb is a thin shell over the library, used by people and DVC stages.

`common` holds the consoles, one-line errors and the option groups that build the library's config objects;
`tables` the result tables; `science` the commands on models and data; `project` those on the pipeline;
`export` figures, CSV and reports from the index.
"""

from __future__ import annotations

import click

from taskspace.cli import export, project, science


@click.group()
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

"""Which version a stream puts on: a line or version name -> (version, batch, how); no TensorFlow.

Example::

    from models.versions import resolve_stream_model

    resolve_stream_model("data", "model_0000_demo")            # ('model_0000_demo_v1', 0,
                                                               #  'from scratch')
    resolve_stream_model("data", "model_0000_demo_v1")         # (..., 1500, 'continuing training')
    resolve_stream_model("data", "model_0000_demo", new=True)  # ('model_0000_demo_v2', 0, ...)

The `[stream] model` setting, a chat switch and an API switch all name a line
(its newest version, `LINE_v1` created when it has none) or a version; `new=True`
creates the line's next version. The batch is where a trainer resumes: the newest
checkpoint that passes the loader's checks (a damaged newer one is skipped); "how"
is the timeline's word for it (`engine.records.timeline`).

Parameter counts of a new version. Counting means building the model, and this
module runs inside the app, which never imports TensorFlow (start-up seconds and
hundreds of MB on the process that serves the stream). So a new version takes the
counts of a version of the same line created from the identical spec text (the
same spec builds the same model), and otherwise starts with none: the registry
keeps NULL and `models list` says "not counted yet". The first process that
builds the version's model records them (`Registry.record_parameters`): the
trainer and the driver, which build it anyway, `models summary VERSION`, and
`charles-stream report`, which has TensorFlow loaded for its architecture plots,
so a model page always shows real counts. The alternative, building the model in a child process
of our own CLI, held a switch up for up to minutes, could fail for reasons that
had nothing to do with the switch, and parsed the child's last line of output.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.records.timeline import How
from models.checkpoints import resumable_checkpoint
from models.registry import VERSION_NAME, ModelVersion, Registry, version_dir
from models.spec import parse_spec, spec_path

log = logging.getLogger("charles.models.versions")


def resolve_stream_model(
    data_dir: str | Path, model: str, *, new: bool = False
) -> tuple[str, int, How]:
    """A line or version to stream -> (version, batches already trained, how it starts).

    A line means its newest version (`LINE_v1` is created when it has none);
    `new=True` creates the next version of the line (of a version's line).
    Raises `UsageError` for an unknown line or version, naming what exists,
    `ConfigError` for a line whose spec file is invalid, and `CheckpointError`
    for a version whose every checkpoint is damaged (its trainer would refuse it).
    """
    match = VERSION_NAME.match(model)
    line = match["line"] if match else model
    with Registry(data_dir) as registry:
        if match and not new:
            version = registry.version(model)
        else:
            versions = registry.versions(line)
            version = versions[-1] if versions and not new else new_version(registry, line)
        periods = registry.periods(version.name)
    checkpoint = resumable_checkpoint(version_dir(data_dir, version.name))
    batch = checkpoint.batch if checkpoint else 0
    how: How
    if batch == 0:
        how = "from scratch"
    elif periods and periods[-1].streamed:
        how = "continuing training"
    else:
        how = "pre-trained off-stream"
    return version.name, batch, how


def new_version(registry: Registry, line: str) -> ModelVersion:
    """Register the line's next version with its spec file as it is now; builds no model.

    The spec is checked first (an invalid file is refused before a version
    exists). Counts come from an earlier version with the identical spec text,
    else stay unknown until a process that builds the model records them.
    """
    path = spec_path(line)
    spec_toml = path.read_text(encoding="utf-8")
    parse_spec(spec_toml, line=line, source=str(path))
    same_spec = [
        version
        for version in registry.versions(line)
        if version.spec_toml == spec_toml and version.parameters is not None
    ]
    counts = same_spec[-1].parameters if same_spec else None
    version = registry.create_version(line, spec_toml=spec_toml, parameters=counts)
    log.info(
        "created %s (%s)",
        version.name,
        f"{counts.total:,} parameters" if counts else "parameters not counted yet",
    )
    return version

"""Units of a run: the whole input at once, or one input file after the other.

A run is one unit unless it is resumable (``--resume``) or a sink writes one file per input
(``{stem}`` in its ``path``). Then the single file-reading source's ``path`` (a file or a
glob) is expanded here and each matching file is a unit of its own: the source reads that
file, ``{stem}`` in sink paths becomes its name, and its outputs are committed before the
next file starts (see :mod:`quiver.pipeline.resume` for the state kept between runs).

This module also knows the size of the input, for the progress display.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from quiver.pipeline.component import ComponentConfig
from quiver.pipeline.plan import PipelinePlan, PlanStep
from quiver.pipeline.resume import STEM, ResumeState, expand_glob, has_glob, state_path_for
from quiver.runtime.errors import ConfigError

__all__ = ["RunUnit", "UnitSchedule", "schedule_units"]


@dataclass(frozen=True)
class RunUnit:
    """One sub-run: all the input (``file`` None) or one input file and its ``stem``."""

    file: str | None = None
    stem: str | None = None
    checkpoint: bool = False  # a checkpoint of an endless source: no rows, no output

    def config_of(self, step: PlanStep) -> ComponentConfig:
        """The step's config for this unit: the source reads ``file``, sinks get ``{stem}``."""
        if self.file is not None and step.reads_files:
            return step.config.model_copy(update={"path": self.file})
        option = step.path_option
        if self.stem is None or not step.writes_files or not isinstance(option, str):
            return step.config
        if STEM not in option:
            return step.config
        return step.config.model_copy(update={"path": option.replace(STEM, self.stem)})

    def output_path(self, step: PlanStep) -> str | None:
        """The absolute path a file-writing sink writes in this unit."""
        if not step.writes_files or not step.paths:
            return None
        path = step.paths[0]
        return path.replace(STEM, self.stem) if self.stem is not None else path

    def path_of(self, step: PlanStep) -> str | None:
        """The file a file step reads or writes in this unit (None for other steps)."""
        if step.writes_files:
            return self.output_path(step)
        if step.reads_files:
            return self.file or (step.paths[0] if step.paths else None)
        return None

    def rejects_path(self, path: str | None) -> str | None:
        """The rejects file of this unit: one per input file when running per file."""
        if path is None or self.stem is None:
            return path
        if STEM in path:
            return path.replace(STEM, self.stem)
        root, ext = os.path.splitext(path)
        return f"{root}.{self.stem}{ext}"


@dataclass
class UnitSchedule:
    """The units to run, the input files skipped as done, and the input size in bytes."""

    units: list[RunUnit]
    bytes_total: int | None = None
    skipped: list[str] = field(default_factory=list)
    state: ResumeState | None = None
    bytes_done: int = 0  # bytes of the input files of the units finished so far

    def finish(self, unit: RunUnit, rows: int, *, record: bool) -> None:
        """Note ``unit`` as done (``record``: in the resume state, for the next run)."""
        if unit.file is None:
            return
        self.bytes_done += os.path.getsize(unit.file) if os.path.exists(unit.file) else 0
        if self.state is not None and record:
            self.state.mark_done(unit.file, rows, [])


def schedule_units(plan: PipelinePlan, *, resume: bool, dry_run: bool) -> UnitSchedule:
    """The units of a run of ``plan`` (ConfigError when per-file units cannot be made)."""
    per_file = resume or any(STEM in str(s.path_option or "") for s in plan.sinks)
    if not per_file:
        return UnitSchedule([RunUnit()], bytes_total=_input_bytes(plan))
    sources = plan.sources
    source = sources[0] if len(sources) == 1 else None
    option: Any = source.path_option if source is not None else None
    if source is None or not isinstance(option, str) or not option:
        raise ConfigError.one(
            "--resume and {stem} outputs need exactly one source with one `path` (a file "
            "or a glob)",
            plan.file,
            "use a file source such as csv with `path: in/*.csv`",
        )
    pattern = source.paths[0]
    files = expand_glob(pattern) if has_glob(pattern) else [pattern]
    if not files or not all(os.path.isfile(f) for f in files):
        raise ConfigError.one(
            f"no input file matches {pattern}",
            source.where,
            "check the source `path` (relative paths start at the pipeline file)",
        )
    if dry_run:
        files = files[:1]
    path_sinks = [s for s in plan.sinks if s.writes_files and s.path_option]
    if len(files) > 1:
        for s in path_sinks:
            if STEM not in str(s.path_option):
                raise ConfigError.one(
                    f"{len(files)} input files match {pattern} but sink '{s.name}' writes "
                    "one file, so each input would overwrite the previous output",
                    s.where,
                    "put {stem} in the sink path, e.g. out/{stem}.parquet",
                )
    schedule = UnitSchedule([], bytes_total=sum(os.path.getsize(f) for f in files))
    if resume:
        out_dir = os.path.dirname(path_sinks[0].paths[0]) if path_sinks else plan.base_dir
        schedule.state = ResumeState.load(state_path_for(plan.name, out_dir), plan.file, pattern)
    for f in files:
        if schedule.state is not None and schedule.state.is_done(f):
            schedule.skipped.append(f)
            schedule.bytes_total = (schedule.bytes_total or 0) - os.path.getsize(f)
            continue
        schedule.units.append(RunUnit(f, os.path.splitext(os.path.basename(f))[0]))
    return schedule


def _input_bytes(plan: PipelinePlan) -> int | None:
    """Total size of the local files the sources will read, when that is knowable."""
    total = 0
    for step in plan.sources:
        if not step.reads_files or not step.paths:
            return None
        for full in step.paths:
            if "://" in full:
                return None
            files = expand_glob(full) if has_glob(full) else [full]
            total += sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    return total or None

"""`percept design|run|simulate|serve|export-online` (also `python -m study ...`): trial lists, one participant,
simulated observers, the online study's server and its export.

Each command is (config dataclasses, run function); `percept.commands` makes the flags, reads
`--config` and prints expected failures as one line. `--out` is the experiment folder runs/EXP.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from percept import commands
from percept.commands import Command
from percept.contracts import InputError
from study.design import DesignConfig
from study.experiment import RunConfig
from study.observers import ObserverConfig
from study.online.config import ExportConfig, ServeConfig


@dataclass(frozen=True)
class DesignPaths:
    """Where `percept design` reads and writes."""

    out: Path = field(metadata={"help": "experiment folder runs/EXP; writes <out>/study/"})
    manifest: Path | None = field(default=None, metadata={
        "help": "manifest to draw from; none: <out>/reconstructions/manifest.csv"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace a design that has responses: people's files are moved to study/responses-archived-<time>/, "
                "simulated ones dropped"})


@dataclass(frozen=True)
class StudyTarget:
    """The design a session or a simulation uses: the experiment folder, or the design file itself."""

    out: Path | None = field(default=None, metadata={"help": "experiment folder runs/EXP (uses <out>/study/design.csv)"})
    design: Path | None = field(default=None, metadata={"help": "design.csv to use instead of <out>/study/design.csv"})

    def design_csv(self) -> Path:
        """The design file: --design, else <out>/study/design.csv; neither is one line."""
        if self.design is not None:
            return self.design
        if self.out is None:
            raise InputError("give --out runs/EXP (or --design PATH/design.csv)")
        return self.out / "study" / "design.csv"


@dataclass(frozen=True)
class Participant:
    """`percept run`: who takes part."""

    participant: str | None = field(default=None, metadata={
        "help": "participant id (letters, digits, - and _); none: a dialog asks"})


@dataclass(frozen=True)
class SimulateConfig:
    """`percept simulate`: how many scripted observers, numbered from where, seeded how."""

    participants: int = field(metadata={"help": "simulated observers to write: sim01, sim02, ..."})
    first: int = field(default=1, metadata={"help": "number of the first simulated observer (sim01 = 1)"})
    seed: int = field(default=0, metadata={"help": "seeds every observer's random draws"})


# --kinds, --pairs and --ranking-losses take a default and/or per-architecture parts ("mse:ms_ssim;fc=ssim:mse"):
# their text reaches run_design as it was typed, and plan_settings turns it into DesignConfig's plan fields.
PLAN_FIELDS = ("kinds", "pairs", "ranking_losses")


def run_design(paths: DesignPaths, make_config) -> int:
    """Build the design from the manifest."""
    from study.design import build_design, describe, load_design, plan_settings

    given = make_config.keywords
    plan = plan_settings(*(given.get(name, commands.default_of(DesignConfig, name)) for name in PLAN_FIELDS))
    rest = {k: v for k, v in given.items() if k not in PLAN_FIELDS}  # the plan fields' text is replaced by `plan`
    cfg = make_config.func(**rest, **plan)
    manifest = paths.manifest or paths.out / "reconstructions" / "manifest.csv"
    path = build_design(manifest, paths.out, cfg, overwrite=paths.overwrite)
    df, _ = load_design(path)
    mirrored = f" ({cfg.lists} covering every item, each with its mirror)" if cfg.mirror else ""
    print(f"design: {len(df)} trials in {df['list_id'].nunique()} list(s){mirrored} → {path}")
    print(describe(df))
    return 0


def run_session_command(target: StudyTarget, who: Participant, make_config) -> int:
    """Run one participant; the participant dialog appears only when no --participant is given."""
    from study.experiment import ask_participant, run_session

    participant = who.participant
    session = make_config.keywords.get("session", commands.default_of(RunConfig, "session"))
    if participant is None:
        answer = ask_participant(session)
        if answer is None:
            print("run: cancelled in the dialog; nothing was recorded", file=sys.stderr)
            return 1
        participant, session = answer
    run_session(make_config(design=target.design_csv(), participant=participant, session=session))
    return 0


def run_simulate(target: StudyTarget, sim: SimulateConfig, cfg: ObserverConfig) -> int:
    """Write the simulated observers' response files."""
    from study.observers import simulate

    paths = simulate(target.design_csv(), sim.participants, seed=sim.seed, config=cfg, first=sim.first)
    print(f"simulate: {len(paths)} observer(s) '{cfg.describe()}' → {paths[0].parent}")
    return 0


def run_serve(target: StudyTarget, cfg: ServeConfig) -> int:
    """Serve the design to browsers until Ctrl-C."""
    from study.online.server import serve

    serve(cfg, target.design_csv())
    return 0


def run_export_online(target: StudyTarget, cfg: ExportConfig) -> int:
    """Write the online sessions as response files (mode=online)."""
    from study.online.export import export_online

    paths, empty = export_online(target.design_csv(), cfg.database)
    folder = target.design_csv().resolve().parent / "responses"
    print(f"export-online: {len(paths)} session(s) with answers → {folder}"
          + (f"; {empty} session(s) without answers skipped" if empty else ""))
    return 0


COMMANDS = (
    Command("design", (DesignPaths, DesignConfig), run_design, parse={name: str for name in PLAN_FIELDS},
            later={DesignConfig: ("arch_kinds", "arch_pairs", "arch_ranking_losses")},
            description="Writes <out>/study/design.csv + design.json (trial lists, counterbalancing, catch and practice)."),
    Command("run", (StudyTarget, Participant, RunConfig), run_session_command, later={RunConfig: ("design", "participant")},
            flags={"list_choice": "--list"},
            description="Opens the PsychoPy window; resumes an unfinished session."),
    Command("simulate", (StudyTarget, SimulateConfig, ObserverConfig), run_simulate,
            description="Writes <out>/study/responses/simNN-1.csv (+ .json session record)."),
    Command("serve", (StudyTarget, ServeConfig), run_serve,
            description="Serves the design to participants' browsers (FastAPI on uvicorn; state in <study>/online/)."),
    Command("export-online", (StudyTarget, ExportConfig), run_export_online,
            description="Writes the online sessions to <study>/responses/ as response files with mode=online."),
)


def main(argv: list[str] | None = None) -> int:
    """`percept design|run|simulate|serve|export-online ...` (argv starts with the command); bad input → one line, exit 2."""
    return commands.main(COMMANDS, argv, package="study")

"""The files of a style or super-resolution run, kept as `percept train` keeps its own.

`percept style train` and `percept superres train` run their own epoch loops, but a run of either
has the same record (config.json), atomic checkpoint.pt and metrics.csv as an autoencoder run, so
resume, the NaN stop and `finished_*_runs` treat all three alike. `RunFiles` writes them; what
differs between the two (the record's extra facts, the model spec, the metrics columns) is passed in.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

# Imported at the top: this module itself is imported only inside train_style and train_sr, so
# `percept --help` and the torch-free parts of style and superres stay light.
from autoencoders import train as T
from percept.contracts import InputError
from percept.contracts import run as run_c  # the run-record contract, kinds "style" and "superres"
from percept.contracts.tables import atomic_write_csv


@dataclass
class RunFiles:
    """config.json, checkpoint.pt and metrics.csv of one run of `kind` ("style" or "superres")."""

    cfg: Any  # StyleTrainConfig or SRConfig: run_name, run_dir, epochs and the fields saved with the run
    kind: str  # the checkpoint's and record's kind, also the prefix of the lines printed
    what: str  # the checkpoint in words, for the refusal of another kind's: "style-transfer"
    columns: tuple[str, ...]  # metrics.csv's columns, in order
    record: dict = field(default_factory=dict)  # config.json as last written

    @property
    def run_dir(self) -> Path:
        """The run's folder."""
        return self.cfg.run_dir

    def prepare(self) -> tuple[dict | None, bool]:
        """(checkpoint to resume from or None, whether the run already finished), by `percept train`'s rules."""
        resume_state = T.prepare_run_dir(self.cfg)
        if resume_state is not None and resume_state.get("finished"):
            print(f"{self.kind} {self.cfg.run_name}: already finished with these settings; nothing to resume")
            return None, True
        if resume_state is not None and resume_state.get("kind") != self.kind:
            raise InputError(f"{self.run_dir / 'checkpoint.pt'}: not a {self.what} checkpoint")
        return resume_state, False

    def restore(self, resume_state: dict | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator) -> tuple[int, int, list]:
        """(epoch, step, history) to go on from: the checkpoint's, said in a line, or a fresh start's."""
        epoch, step, history = T.restore(resume_state, model, optimizer, generator)
        if resume_state is not None:
            print(f"{self.kind} {self.cfg.run_name}: resuming after epoch {epoch} (step {step})")
        return epoch, step, history

    def start(self, device: torch.device, epochs_done: int, **facts: Any) -> dict:
        """Write the running record: the common fields, then `facts` (the kind's own, in order); return it."""
        self.record = {"run": self.cfg.run_name, "kind": self.kind, "status": "running", "config": asdict(self.cfg),
                       "device": str(device), "versions": T.versions(), "git_commit": T.git_commit(), **facts,
                       "started": T._now(), "epochs_done": epochs_done}
        run_c.write_run_record(self.run_dir, self.record)
        return self.record

    def write_metrics(self, history: list[dict]) -> None:
        """metrics.csv from the rows so far, atomically, in this kind's columns."""
        atomic_write_csv(pd.DataFrame(history, columns=list(self.columns)), self.run_dir / "metrics.csv")

    def end_epoch(self, model: torch.nn.Module, model_spec: dict, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, epoch: int, step: int, history: list[dict]) -> None:
        """Save the checkpoint, then metrics.csv, then the record: a kill between them resumes from the checkpoint."""
        T.save_checkpoint(self.run_dir / "checkpoint.pt", {
            "format": T.CHECKPOINT_FORMAT, "version": T.CHECKPOINT_VERSION, "kind": self.kind,
            "config": asdict(self.cfg), "model_spec": model_spec, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step, "rng": T.rng_state(generator),
            "metrics": history,
        })
        self.write_metrics(history)
        self.record["epochs_done"] = epoch
        run_c.write_run_record(self.run_dir, self.record)

    def finish(self, epoch: int) -> None:
        """Mark the record finished."""
        self.record.update(status="finished", finished=T._now(), epochs_done=epoch)
        run_c.write_run_record(self.run_dir, self.record)

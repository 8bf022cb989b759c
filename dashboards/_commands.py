"""The commands a trial's page offers: resume it, or run its configuration again."""
from __future__ import annotations

import json
import re
import shlex
from typing import Any, Mapping

from storage.read_api import json_safe

__all__ = ["trial_commands"]

_NAME_OK = re.compile(r"[^A-Za-z0-9_.\-]+")


def trial_commands(spec: Mapping[str, Any], study_name: str, study_state: str, trial: Mapping[str, Any],
                   storage_url: str) -> dict[str, Any]:
    """{resume: the command that carries this trial on from its newest checkpoint, or None when
    it has nothing left to run; resume_note; reproduce_file, reproduce_yaml, reproduce: a study
    file that runs exactly this trial's configuration once, and the command that runs it}.

    The storage URL is the one the dashboard shows (password masked as ***)."""
    import yaml

    number = trial["number"]
    store = shlex.quote(storage_url)
    checkpoints = trial.get("checkpoints") or []
    open_state = trial["state"] in ("WAITING", "RUNNING", "PAUSED")
    resume = None
    note = f"trial {number} is {trial['state']}: it has nothing left to run; run its configuration again below"
    if open_state or (study_state != "COMPLETE" and trial["state"] not in ("COMPLETE", "PRUNED", "FAILED")):
        resume = f"search resume {shlex.quote(study_name)} --storage {store}"
        where = (f"from its newest checkpoint (step {checkpoints[-1]['step']}: {checkpoints[-1]['path']})"
                 if checkpoints else "from the start (it has no checkpoint)")
        note = (f"resumes the study: trial {number} ({trial['state']}) continues {where}"
                if trial["state"] != "PAUSED" else
                f"resumes the study: the scheduler may thaw trial {number} {where}")
    doc = json.loads(json.dumps(json_safe(dict(spec))))
    base = _NAME_OK.sub("-", f"{study_name}-trial-{number}").strip("-.")[:100] or f"trial-{number}"
    doc["name"] = base
    # Exactly this configuration, once, to the end: the enqueued params first, no scheduler to stop it,
    # no warm start; the algorithm never gets to propose (budget 1).
    doc["enqueue"] = [trial["params"]]
    doc["budget"] = {**(doc.get("budget") or {}), "trials": 1, "parallel": 1}
    doc["algorithm"] = {"name": "random", "seed": 0}
    doc.pop("scheduler", None)
    doc.pop("warm_start", None)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    file = f"{base}.yaml"
    out = {"resume": resume, "resume_note": note, "reproduce_file": file, "reproduce_yaml": text,
           "reproduce": f"search run {shlex.quote(file)} --storage {store}", "reproduce_note": None}
    if trial.get("ancestry"):
        out["reproduce_note"] = ("PBT changed this member's hyperparameters during training (see its ancestry); "
                                 "this file runs its final ones from step 0, not the schedule")
    return out

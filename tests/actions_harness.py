"""A small stand-in for GitHub's runner, for testing action.yml and the workflows' `run:` steps here without GitHub.

It is a simulation, not the runner: it runs each `run:` step with `bash --noprofile --norc -eo pipefail`, as the
runner's default bash shell does, with the variables the runner sets for a step (GITHUB_WORKSPACE, RUNNER_TEMP,
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_ENV, GITHUB_ACTION_PATH) and the step's `env:`, and it evaluates only
the expressions these files use (`inputs.X`, `steps.ID.outputs.X`, `github.action_path`); any other expression
is an error, so a file that grows one is not silently mis-run. `uses:` steps are not run.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Outcome:
    """What a run of the action left: its outputs, the job summary, each step's exit code and output."""

    outputs: dict[str, str]
    summary: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(step["code"] != 0 for step in self.steps)


def _outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT's `key=value` lines and `key<<DELIMITER` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index + 1)
            values[key] = "\n".join(lines[index + 1:end])
            index = end + 1
            continue
        key, _, value = line.partition("=")
        values[key] = value
        index += 1
    return values


def evaluate(text: str, context: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        parts = expression.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            return context["inputs"].get(parts[1], "")
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return context["steps"].get(parts[1], {}).get(parts[3], "")
        if expression == "github.action_path":
            return str(context["action_path"])
        raise ValueError(f"the harness does not evaluate ${{{{ {expression} }}}}")
    return EXPRESSION.sub(value, text)


def run_action(action_path: Path, inputs: dict[str, str], workspace: Path, temp: Path,
               environment: dict[str, str] | None = None, timeout: float = 1800) -> Outcome:
    """Run the composite action at `action_path` with `inputs` as a job in `workspace` would."""
    action = yaml.safe_load((action_path / "action.yml").read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    declared = action.get("inputs", {})
    unknown = set(inputs) - set(declared)
    assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
    missing = [name for name, spec in declared.items() if spec.get("required") and not inputs.get(name)]
    assert not missing, f"required inputs not given: {missing}"
    context: dict[str, Any] = {"inputs": {name: inputs.get(name, str(spec.get("default", "")))
                                          for name, spec in declared.items()},
                               "steps": {}, "action_path": action_path}
    temp.mkdir(parents=True, exist_ok=True)
    summary = temp / "step_summary.md"  # a new job's: empty
    summary.write_text("")
    outcome = Outcome(outputs={}, summary="")
    for number, step in enumerate(action["runs"]["steps"]):
        if "run" not in step:
            raise ValueError(f"step {number}: the harness runs `run:` steps only")
        assert step.get("shell") == "bash", "a composite action's run step must name its shell"
        output = temp / f"output-{number}"
        output.write_text("")
        env = {**(environment or os.environ), "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(temp),
               "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
               "GITHUB_ENV": str(temp / "env"), "GITHUB_ACTION_PATH": str(action_path), "GITHUB_ACTIONS": "true",
               "CI": "true"}
        env.update({key: evaluate(str(value), context) for key, value in (step.get("env") or {}).items()})
        script = temp / f"step-{number}.sh"
        script.write_text(evaluate(step["run"], context), encoding="utf-8")
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                                env=env, capture_output=True, text=True, timeout=timeout)
        outcome.steps.append({"name": step.get("name"), "code": result.returncode, "stdout": result.stdout,
                              "stderr": result.stderr})
        if "id" in step:
            context["steps"][step["id"]] = _outputs(output)
        if result.returncode != 0:
            break
    if not outcome.failed:
        outcome.outputs = {name: evaluate(str(spec["value"]), context) for name, spec in action["outputs"].items()}
    outcome.summary = summary.read_text(encoding="utf-8")
    return outcome

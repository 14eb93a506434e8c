"""The README's two commands, as a newcomer runs them.

The run command is read from README.md, so the test fails when the README drifts from what
works: it runs that dagster invocation once, on the bundled sample, in a temporary folder with a
temporary copy of the project's Dagster instance, and checks what a newcomer then sees: a
successful run, every lake table, and the run on the job's page in the UI.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from deltalake import DeltaTable

from stedi_assets.definitions import defs
from stedi_assets.tables import TABLES
from stedi_assets_tests.conftest import REPO, run_cli

# The tag the UI's job page filters runs by (besides the job's name): `<repository>@<location>`
# of the job it shows (dagster-webserver's runs list of a job, 1.13).
REPOSITORY_LABEL_TAG = ".dagster/repository"


def readme_commands() -> list[str]:
    """The lines of the README's first bash block, under "Set up and run"."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up and run", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md has no bash block under 'Set up and run'"
    return block.group(1).strip().splitlines()


def dagster_invocation(command: str, cwd: Path) -> tuple[dict[str, str], list[str]]:
    """The environment and arguments of the `dagster` part of a `... && ... && VAR=x dagster ...`
    line, with `$PWD` standing for `cwd`."""
    part = next(p for p in command.split("&&") if "dg launch" in p)
    words = [w.replace("$PWD", str(cwd)) for w in shlex.split(part)]
    env = {}
    while "=" in words[0] and not words[0].startswith("."):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == ".venv/bin/dg", words[0]
    return env, ["dg", *words[1:]]


def test_readme_commands(tmp_path: Path):
    first, second = readme_commands()
    assert first.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && ")
    # The second is the test command .ci/run runs on a fresh machine.
    assert second == ".venv/bin/python -m pytest"
    assert second in (REPO / ".ci" / "run").read_text().splitlines()

    (tmp_path / "dagster_home").mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", tmp_path / "dagster_home")
    env, args = dagster_invocation(first, tmp_path)
    assert env == {"DAGSTER_HOME": str(tmp_path / "dagster_home")}
    result = run_cli(args, env=env, cwd=tmp_path)
    # Nothing a newcomer cannot act on: no Python warning (Dagster's SupersessionWarning of
    # `dagster job execute`, a BetaWarning...) in what the command prints.
    printed = result.stdout + result.stderr
    assert not re.search(r"\w+Warning\b", printed), re.findall(r".*\w+Warning\b.*", printed)

    for table in TABLES.values():
        assert DeltaTable.is_deltatable(str(tmp_path / "stedi_lake" / table.location)), table.name

    instance = DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    (run,) = instance.get_runs()
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.job_name == "stedi_lakehouse"

    # The UI's job page of stedi_lakehouse in the workspace's code location lists the run, and
    # the README runs the module the workspace loads.
    (location,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert args[args.index("-m") + 1] == location["python_module"]["module_name"]
    label = f"{defs.get_repository_def().name}@{location['python_module']['location_name']}"
    job_page = instance.get_runs(RunsFilter(job_name="stedi_lakehouse", tags={REPOSITORY_LABEL_TAG: label}))
    assert [r.run_id for r in job_page] == [run.run_id]

    # No "Join the Dagster community" modal over the UI.
    assert instance.nux_enabled is False
    instance.dispose()

"""The README's "Investigate an incident", run line by line as printed, each answer checked
(issue 14): piped, as a script would read it, and then at 80 columns, as an analyst sees it.

Lines run in bash from one folder with the virtualenv's bin first on PATH and a private HOME
(config, trust store and caches), so nothing of this machine's user is read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def walkthrough() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Investigate an incident") :]
    block = section[section.index("```sh\n") + 6 : section.index("\n```", section.index("```sh"))]
    return [line for line in block.splitlines() if line.strip()]


@dataclass
class Done:
    line: str
    code: int
    out: str
    err: str


class Shell:
    """bash -c per line, in one folder; ``NAME=$(…)`` lines keep their value for later ones."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        home = folder / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
        self.env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_CACHE_HOME=str(home / "cache"),
            COLUMNS="80",
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )

    def run(self, line: str, **extra: str) -> Done:
        assigned = re.match(r"^([A-Z_]+)=(\$\(.*\))$", line)
        command = f'printf %s "{assigned.group(2)}"' if assigned else line
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=self.folder,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if assigned and done.returncode == 0:
            self.env[assigned.group(1)] = done.stdout
        return Done(line, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Shell, list[Done]]:
    shell = Shell(tmp_path_factory.mktemp("analyst"))
    return shell, [shell.run(line) for line in walkthrough()]


def answer(story: tuple[Shell, list[Done]], starts: str, nth: int = 0) -> Done:
    found = [d for d in story[1] if d.line.startswith(starts)]
    assert found, f"the walk-through has no line starting {starts!r}"
    return found[nth]


def rows(done: Done) -> list[list[str]]:
    """Piped output is TSV: a header, then one line per row."""
    return [line.split("\t") for line in done.out.splitlines()]


def test_every_line_runs_as_printed(story) -> None:
    failed = [(d.line, d.code, d.err[-400:]) for d in story[1] if d.code != 0]
    assert failed == []


def test_the_demo_replays_the_complaint_exact(story) -> None:
    assert "exact" in answer(story, "replay demo").out


def test_runs_lists_a_page_and_says_how_many_exist(story) -> None:
    done = answer(story, "replay runs --limit 5")
    assert rows(done)[0][:2] == ["run_id", "pipeline"] and len(rows(done)) == 6
    assert re.search(r"production runs 1 to 5 of \d+; \d+ more: --offset 5", done.err)


def test_find_names_the_one_run_that_decided_the_application(story) -> None:
    shell, _ = story
    found = rows(answer(story, "replay find"))
    assert len(found) == 2 and UUID.match(shell.env["RUN"])
    assert found[1][0] == shell.env["RUN"]


def test_show_lists_steps_and_the_dvc_versions_of_the_components(story) -> None:
    out = answer(story, "replay show").out
    for name in ("features", "fraud", "pd", "decision", "bureau", "dvc_rev"):
        assert name in out


def test_at_replays_the_deciding_run_exact(story) -> None:
    done = answer(story, "replay at 2026-03-14T12:00:00Z --pipeline credit-decision --record")
    assert story[0].env["RUN"] in done.out and "exact" in done.out


def test_a_whatif_answers_and_stays_apart_from_the_record(story) -> None:
    asked = answer(story, "replay at 2026-03-14T12:00:00Z --pipeline credit-decision --input")
    assert len(rows(asked)) == 6 and "what-if run" in asked.err
    whatifs = rows(answer(story, "replay runs --kind whatif"))
    assert len(whatifs) == 2 and "whatif" in whatifs[1]
    again = answer(
        story, "replay at 2026-03-14T12:00:00Z --pipeline credit-decision --record", nth=1
    )
    assert story[0].env["RUN"] in again.out  # the production run, not the question


def test_diff_names_what_changed_since_the_decision(story) -> None:
    shell, _ = story
    assert UUID.match(shell.env["TODAY"]) and shell.env["TODAY"] != shell.env["RUN"]
    out = answer(story, "replay diff").out
    assert "bureau" in out and "pd" in out


def test_swapping_in_todays_model_flips_the_complaint(story) -> None:
    out = answer(story, 'replay run "$RUN" --swap').out
    assert "APP-00000006" in out and "flipped" in out


def test_the_exported_evidence_verifies_against_the_pinned_key(story) -> None:
    assert (story[0].folder / "complaint.bundle").stat().st_size > 0
    assert "signer" in answer(story, "replay verify").out


@pytest.mark.parametrize(
    "line",
    [
        "replay runs --limit 5",
        'replay show "$RUN"',
        "replay find APP-00000006",
        'replay diff "$RUN" "$TODAY"',
    ],
)
def test_at_80_columns_every_line_fits(story, line) -> None:
    done = story[0].run(line, TTY_COMPATIBLE="1", FORCE_COLOR="0")
    assert done.code == 0, done.err
    lines = ANSI.sub("", done.out).splitlines()
    assert lines and max(len(x) for x in lines) <= 80
    assert "\t" not in done.out  # a table, not TSV

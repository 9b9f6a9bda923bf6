"""The house rules of ``backfill/`` as tests: import-linter's contracts in setup.cfg
(layers point down, no import cycle, the sandbox apart), one Celery app where
Celery's layout puts it, and one name per task."""

from __future__ import annotations

from pathlib import Path

import pytest
from importlinter.application.use_cases import lint_imports
from importlinter.configuration import configure

from backfill import constants

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept(capsys: pytest.CaptureFixture[str]) -> None:
    """What ``lint-imports`` (in .ci/run) checks, in this process."""
    configure()  # what the lint-imports command sets up first
    kept = lint_imports(config_filename=str(ROOT / "setup.cfg"), no_logo=True, cache_dir=None)
    out = capsys.readouterr().out
    assert kept, out
    assert "4 kept, 0 broken" in out, out


def test_the_layers_contract_names_every_module() -> None:
    """``exhaustive = true``: a new module must be given a layer (or the contract
    breaks); this checks the list in setup.cfg against the files on disk."""
    text = (ROOT / "setup.cfg").read_text()
    layers = text.split("[importlinter:contract:layers]")[1].split("[importlinter:")[0]
    named = {word for line in layers.splitlines()[4:] for word in line.replace(":", " ").split()}
    on_disk = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "backfill").iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p / "__init__.py").exists()
    } - {"sandbox"}
    assert on_disk <= named, sorted(on_disk - named)


def test_celery_finds_the_app_in_backfill_celery() -> None:
    from celery.app.utils import find_app

    import backfill.celery

    assert find_app("backfill") is backfill.celery.app
    assert backfill.celery.app.main == "backfill"


def test_the_task_names_are_the_constants() -> None:
    import backfill.tasks
    from backfill.celery import app

    names = {n for n in app.tasks if n.startswith("backfill.")}
    assert {
        constants.TASK_SCHEDULE,
        constants.TASK_PROCESS_MONTH,
        constants.TASK_RERESOLVE,
    } <= names
    assert backfill.tasks.process_month.name == constants.TASK_PROCESS_MONTH

"""`./dev faults --out`: a file, or a folder to put a timestamped results file in (a folder given used to fail only
when the results were written, after the whole run)."""

from pathlib import Path

from faults.cli import results_path


def test_the_results_go_to_the_file_named_or_into_the_folder_named(tmp_path: Path) -> None:
    named = tmp_path / "run.json"
    assert results_path(named, tmp_path / "default") == named
    into = results_path(tmp_path, tmp_path / "default")
    assert into.parent == tmp_path and into.name.startswith("results-") and into.suffix == ".json"
    default = results_path(None, tmp_path / "default")
    assert default.parent == tmp_path / "default" and default.name.startswith("results-")

"""The command line's shape: one parser, the old spellings kept, errors in words (no model is loaded)."""

from __future__ import annotations

import pytest

from codeFeature.cli import build_parser, main


def test_classifying_needs_no_subcommand_and_keeps_its_help_and_errors(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python -m codeFeature [-h] [--model NAME_OR_DIR] [--json]")
    assert "scan ROOT --db library.sqlite" in shown and "{classify" not in shown
    with pytest.raises(SystemExit) as done:
        main(["--frob"])  # an unknown option is the classify command's error, with its usage
    err = capsys.readouterr().err
    assert done.value.code == 2 and "[PATH ...]" in err and "unrecognized arguments: --frob" in err
    with pytest.raises(SystemExit):
        main([])
    assert "give at least one PATH (or --list-models)" in capsys.readouterr().err


def test_every_command_is_a_subcommand_of_one_parser():
    parser, parsers = build_parser()
    assert set(parsers) == {"classify", "scan", "export", "tag"}
    assert parser.parse_args(["scan", "music", "--db", "x.sqlite"]).runner is None
    assert parser.parse_args(["tag", "--db", "x.sqlite", "--include-outside"]).include_outside


def test_scan_runner_and_the_old_engine_spelling(tmp_path, capsys):
    db = str(tmp_path / "lib.sqlite")
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    shown = capsys.readouterr().out
    assert "--runner {local,ray}" in shown and "--engine" not in shown  # the old spelling is hidden
    # --address is checked before any model loads: the old spelling says the new one, then the error
    assert main(["scan", str(tmp_path), "--db", db, "--engine", "local", "--address", "h:1"]) == 2
    err = capsys.readouterr().err
    assert "--engine local is now --runner local" in err and "--address needs --runner ray" in err
    assert err.count("\n") == 2 and "Traceback" not in err
    assert main(["scan", str(tmp_path), "--db", db, "--runner", "local", "--address", "h:1"]) == 2
    assert capsys.readouterr().err == "error: --address needs --runner ray\n"
    with pytest.raises(SystemExit) as done:
        main(["scan", str(tmp_path), "--db", db, "--engine", "openvino"])
    assert done.value.code == 2 and "CODEFEATURE_ENGINE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["scan", str(tmp_path), "--db", db, "--engine", "ray", "--runner", "local"])
    assert "give --runner only" in capsys.readouterr().err


def test_collection_commands_answer_bad_input_in_words(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing"), "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--db", str(tmp_path / "missing.sqlite"), str(tmp_path / "out.csv")]) == 2
    assert "does not exist; scan a folder into it first" in capsys.readouterr().err
    assert main(["tag", "--db", str(tmp_path / "x.sqlite"), "--wait", "-1"]) == 2
    assert "--wait must be" in capsys.readouterr().err
    db = tmp_path / "lib.sqlite"
    from codeFeature.collection.store import LibraryStore

    with LibraryStore(db):
        pass
    assert main(["export", "--db", str(db), str(tmp_path / "out.txt")]) == 2
    assert "the export format follows the extension" in capsys.readouterr().err
    assert main(["tag", "--db", str(db), "--min-confidence", "5"]) == 2
    assert "holds no results yet" in capsys.readouterr().err

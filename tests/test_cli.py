"""The command line: exit codes and messages."""

from lattice_plan.cli import main


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["-q", "demo", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nonsense"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "lattice" in capsys.readouterr().out


def test_end_cap_choices_are_the_readers():
    """The CLI lists the end caps without importing the DICOM reader (fast --help); the two
    tuples must stay the same."""
    from lattice_plan import cli
    from lattice_plan.io import rtstruct

    assert cli.END_CAPS == rtstruct.END_CAPS

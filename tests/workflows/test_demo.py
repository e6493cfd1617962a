"""``bayesmatrix demo``: its refusal to clobber a folder. The quick demo itself runs end to end, and its
report is checked, in the table of tests/cli/test_commands.py (one run of it for the suite)."""

from bayesmatrix.cli import main


def test_demo_refuses_a_folder_it_does_not_own(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "demo.json" in error and "--out" in error
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]

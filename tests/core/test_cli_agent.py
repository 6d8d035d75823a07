"""`vmqos agent` on the command line: its help, and one line for each thing it refuses."""

from __future__ import annotations

import pytest

from vmqos.cli.main import main


def test_the_help_shows_an_example_and_every_option(capsys):
    assert main(["agent", "--help"]) == 0
    out = capsys.readouterr().out
    assert "vmqos agent --server http://controller:9696 --host compute1" in out
    for option in ("--server", "--host", "--netns", "--cache", "--resync", "--metrics-listen", "--libvirt",
                   "--monitor-config"):
        assert option in out


@pytest.mark.parametrize("args, words", [
    (["--server", "http://x:9696", "--resync", "0"], ["--resync", "above 0"]),
    (["--server", "http://x:9696", "--netns", "a/b"], ["--netns", "without '/'"]),
    (["--server", "http://x:9696", "--host", "h\n1"], ["host name"]),
])
def test_bad_values_are_one_line(capsys, args, words):
    assert main(["agent", *args]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vmqos: error:") and all(w in err for w in words), err


def test_without_credentials_it_says_which_variables_in_one_line(capsys, tmp_path, monkeypatch):
    for name in ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["agent", "--server", "http://x:9696", "--host", "h1", "--cache", str(tmp_path / "a.db")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME" in err, err

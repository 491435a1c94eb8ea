"""The command line's error line prints user-supplied text as text: a path or class name holding rich markup
("[/x]", "[bold]") must neither crash the error printer nor be rendered."""

from __future__ import annotations

from transferkit.cli.main import main


def test_an_error_quoting_markup_is_printed_verbatim(tmp_path, capsys):
    bad = tmp_path / "no[/x]such[bold]"
    code = main(["evaluate", str(bad), "--data", "digits"])
    out = capsys.readouterr().out
    assert code == 2
    assert "error:" in out
    assert "[/x]such[bold]" in "".join(out.split())  # verbatim, not swallowed as markup

from tecnorev.migrate import cli
from tecnorev.migrate.exitcodes import ExitCode
from tecnorev.migrate.modules import Registry


def test_db_commands_without_any_module_installed_explain(monkeypatch, capsys):
    monkeypatch.setattr(cli, "get_registry", lambda: Registry(()))
    assert cli.main(["heads"]) == ExitCode.BROKEN
    err = capsys.readouterr().err
    assert "error: no module is installed (entry point group 'tecnorev.modules')" in err


def test_db_help_lists_alembic_commands_and_ours(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in (
        "upgrade",
        "downgrade",
        "current",
        "history",
        "heads",
        "stamp",
        "merge",
        "revision",
        "check",
        "forget",
    ):
        assert name in out


def test_downgrade_accepts_cascade(capsys):
    assert cli.main(["downgrade", "--help"]) == 0
    assert "--cascade" in capsys.readouterr().out

"""The console script exists, lists every subcommand, and rejects unknown ones."""
import subprocess
import sys

from t5x_sbs import cli


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "t5x_sbs.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_fails(capsys):
    try:
        code = cli.main(["no-such-command"])
    except SystemExit as e:  # argparse reports invalid choices by exiting 2
        code = e.code
    assert code == 2


def test_every_subcommand_module_is_importable_and_has_the_interface():
    import importlib
    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), name


def test_subcommands_live_in_the_cli_package_and_the_library_never_imports_it():
    """Every `add_arguments`/`run` pair is a `t5x_sbs.cli` module (`train` is the gin entry point
    `t5x_sbs.main`), and no library module imports `t5x_sbs.cli` (issue 13)."""
    import ast
    import pathlib

    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        assert module_name.startswith("t5x_sbs.cli.") or (name, module_name) == ("train", "t5x_sbs.main"), name
    package = pathlib.Path(cli.__file__).parent.parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "cli" and path.parent.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            offenders += [f"{path.relative_to(package)}: {n}" for n in names
                          if n == "t5x_sbs.cli" or n.startswith("t5x_sbs.cli.")]
    assert not offenders, offenders

"""The ``regenheart`` console script: loads the command-line application, then runs the command.

Loading it imports most of regenheart and its libraries (SQLAlchemy, Alembic, pydantic, typer, rich): about
0.7 s, of which the garbage collector's full passes over the growing heap took 0.15-0.25 s, for objects
that live until the process ends. They load without collections and are then left out of later ones
(:func:`regenheart.forked.long_lived`); the command runs as :func:`regenheart.cli.main.main` runs it.
"""

from __future__ import annotations

from regenheart import forked


def main() -> None:
    """Run ``regenheart`` with the arguments of this process (exit status: the command's)."""
    with forked.long_lived():
        from regenheart.cli import main as application
    application.main()

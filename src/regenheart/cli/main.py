"""Command-line entry point (placeholder until the CLI is assembled)."""

import typer

app = typer.Typer(help="regenheart: run the RegenHeart trial from first patient to posted results.")


@app.command()
def version() -> None:
    """Print the package version."""
    from regenheart import __version__

    typer.echo(__version__)

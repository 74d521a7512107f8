"""The ``regenheart export`` command group, shared by every writer of other systems' formats.

Each format module (``odm_commands``, ``redcap_commands``, ...) adds its command to
:data:`export_app`; ``cli/main.py`` registers the group once as ``regenheart export``.
"""

from __future__ import annotations

import typer

export_app = typer.Typer(help="Write the study in other systems' formats.", no_args_is_help=True)

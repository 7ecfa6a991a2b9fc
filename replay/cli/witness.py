"""Witness commands: cosign a store's checkpoint once it is proven to extend the last head
this witness signed (see replay.evidence.witness and replay.cli.app)."""

# No `from __future__ import annotations`: see replay.cli.app.

from pathlib import Path
from typing import Annotated

import typer

from replay.cli import render
from replay.cli.app import PLAIN, JsonOpt, _read_key, app, handled

witness_app = typer.Typer(
    rich_markup_mode=PLAIN,
    no_args_is_help=True,
    help="Witnesses: independent cosigners of a "
    "store's checkpoints, each refusing a rewritten or rolled-back "
    "history.",
)
app.add_typer(witness_app, name="witness")


@witness_app.command("cosign")
@handled
def witness_cosign(
    store: Annotated[Path, typer.Argument(help="The store whose latest checkpoint to cosign.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            metavar="PEM",
            help="The witness's private key (`replay keys init --out FILE`).",
        ),
    ],
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="DIR",
            help="The witness's own state folder: the last head it signed per store "
            "(default ~/.config/pipeline-replay/witness/).",
        ),
    ] = None,
    signer: Annotated[
        Path | None,
        typer.Option(
            "--signer",
            metavar="PEM",
            help="Pin exactly this public key as the store's checkpoint signer (else the trust "
            "store and REPLAY_TRUSTED_KEYS).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cosign a store's latest checkpoint, if it extends the last head this witness signed.

    Its signer must be pinned (exit 14 otherwise); a rolled-back or rewritten history is
    refused (exit 9) and nothing is cosigned."""
    from replay.core import keys
    from replay.evidence import witness
    from replay.store.store import Store

    cosig, path = witness.cosign(
        Store.open(store, create=False), keys.load_private(key), state_dir, signer=_read_key(signer)
    )
    if as_json:
        render.emit_json({**cosig.as_json(), "path": path})
    else:
        render.console.print(
            f"cosigned {cosig.tree_size} entries, root {cosig.root}, signed "
            f"by {cosig.checkpoint_key_id}, as witness {cosig.witness_key_id} "
            f"({path})",
            markup=False,
            highlight=False,
        )

"""Evidence commands: signing keys, checkpoints, export and verify (see replay.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replay import queries, render
from replay.cli import JsonOpt, _read_key, app, handled, open_store, state
from replay.timeparse import parse_time

keys_app = typer.Typer(no_args_is_help=True, help="Signing keys for checkpoints and bundles.")
app.add_typer(keys_app, name="keys")
KeyOpt = Annotated[Path | None, typer.Option(
    "--key", help="Private signing key (default: $REPLAY_SIGNING_KEY or "
                  "~/.config/pipeline-replay/signing-key.pem).")]


@keys_app.command("init")
@handled
def keys_init(out: Annotated[Path | None, typer.Option(help="Where to write the key.")] = None,
              as_json: JsonOpt = False) -> None:
    """Create an Ed25519 signing key (0600, never inside a store)."""
    from replay import keys

    forbidden = tuple(p for p in (Path(state["store"] or "snapshots"),) if p.exists())
    path = keys.init_key(out, forbidden=forbidden)
    if as_json:
        render.emit_json({"private": str(path), "public": str(keys.public_path(path))})
    else:
        render.console.print(f"signing key {path} (public key {keys.public_path(path)})")


@app.command()
@handled
def checkpoint(key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Sign the ledger's current tree head (size + Merkle root)."""
    from replay import checkpoint as checkpoints
    from replay import keys

    cp = checkpoints.sign(open_store(), keys.load_private(key))
    if as_json:
        render.emit_json(cp.as_json())
    else:
        render.console.print(f"checkpoint: {cp.tree_size} entries, root {cp.root}, "
                             f"signed by {cp.key_id}", highlight=False)


@app.command()
@handled
def export(
    runs: Annotated[list[str] | None, typer.Argument(help="Run ids to export.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write.")] = Path(
        "evidence.bundle"),
    since: Annotated[str | None, typer.Option(help="Window start (logical clock).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (logical clock).")] = None,
    pipeline: Annotated[str | None, typer.Option("--pipeline", "-p")] = None,
    record: Annotated[str | None, typer.Option(help="The record the evidence is about.")
                      ] = None,
    redact: Annotated[str | None, typer.Option(
        help="Personal columns to replace by keyed pseudonyms, comma-separated.")] = None,
    with_image: Annotated[bool, typer.Option(
        "--with-image", help="Add the image the runs were recorded in (docker save), so "
                             "they replay offline in it.")] = False,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a signed evidence bundle for runs or an incident window."""
    from replay.errors import UsageError
    from replay.evidence import export as export_runs

    store = open_store()
    ids = list(runs or [])
    if since is not None or until is not None:
        ids += [r["run_id"] for r in queries.runs(
            store, pipeline=pipeline, since=parse_time(since) if since is not None else None,
            until=parse_time(until) if until is not None else None, limit=100_000)]
    if not ids:
        raise UsageError("no runs to export", hint="name runs, or give --since/--until")
    columns = [c.strip() for c in (redact or "").split(",") if c.strip()]
    done = export_runs(store, ids, out, key=key, question={"record": record, "time": since},
                       redact=columns, with_image=with_image)
    if as_json:
        render.emit_json({"bundle": str(done.path), "runs": list(done.runs), "bytes": done.size,
                          "key_id": done.key_id, "checkpoint": done.checkpoint.as_json()})
    else:
        render.console.print(f"wrote {done.path}: {len(done.runs)} runs, {done.files} files, "
                             f"{done.size:,} bytes, signed by {done.key_id}", highlight=False)


@app.command()
@handled
def verify(
    bundle: Annotated[Path | None, typer.Argument(help="Evidence bundle to verify.")] = None,
    key: Annotated[Path | None, typer.Option(
        help="The public key the bundle must be signed with.")] = None,
    store_check: Annotated[bool, typer.Option(
        "--store", help="Check every object, segment, manifest and checkpoint of the store."
    )] = False,
    extract: Annotated[Path | None, typer.Option(
        help="After a successful verification, write the bundle's files into this folder."
    )] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a store (--store) or an evidence bundle; exit 1 on the first failure."""
    from replay.audit import verify_store
    from replay.errors import CorruptionError, NotFoundError, UsageError

    if not store_check and bundle is None:
        raise UsageError("nothing to verify", hint="give a BUNDLE, or --store")
    if store_check:
        try:
            with render.steps_progress(disable=as_json) as tick:
                counts = verify_store(open_store(), tick)
        except (CorruptionError, NotFoundError) as exc:
            if as_json:
                render.emit_json({"ok": False, "error": str(exc)})
            else:
                render.console.print(f"[red]FAIL[/red] {exc.message}", highlight=False)
            raise typer.Exit(1) from None
        if as_json:
            render.emit_json({"ok": True, **counts})
        else:
            render.console.print(
                f"[green]OK[/green] {counts['objects']} objects, {counts['runs']} ledger "
                f"entries, {counts['blocks']} blocks, {counts['checkpoints']} checkpoints")
    if bundle is not None:
        from replay.verify import verify_bundle

        check = verify_bundle(bundle, _read_key(key))
        if as_json:
            render.emit_json({"ok": check.ok, "failure": check.failure, "runs": check.runs,
                              "checks": [{"part": p, "ok": ok, "detail": d}
                                         for p, ok, d in check.checks]})
        else:
            for part, ok, detail in check.checks:
                mark = "[green]OK  [/green]" if ok else "[red]FAIL[/red]"
                render.console.print(f"{mark} {part}  {detail}", highlight=False)
        if not check.ok:
            raise typer.Exit(1)
        if extract is not None:
            from replay.bundle import extract as write_files

            write_files(check.files, extract)
            if not as_json:
                render.console.print(f"extracted {len(check.files)} files into {extract}")

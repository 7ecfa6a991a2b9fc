"""Evidence commands: signing keys, trusted signers, checkpoints, export and verify (see
replay.cli.app)."""

# No `from __future__ import annotations`: see replay.cli.app.

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from replay.cli import render
from replay.cli.app import PLAIN, JsonOpt, KindOpt, _read_key, app, handled, open_store, state
from replay.core import kinds
from replay.core.lazy import Lazy
from replay.core.timeparse import parse_time

if TYPE_CHECKING:
    from replay.catalog import queries
    from replay.evidence.verify import Verification
else:
    queries = Lazy("replay.catalog.queries")

keys_app = typer.Typer(
    rich_markup_mode=PLAIN, no_args_is_help=True, help="Signing keys for checkpoints and bundles."
)
app.add_typer(keys_app, name="keys")
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Private signing key (default: $REPLAY_SIGNING_KEY or "
        "~/.config/pipeline-replay/signing-key.pem).",
    ),
]


@keys_app.command("init")
@handled
def keys_init(
    out: Annotated[Path | None, typer.Option(help="Where to write the key.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an Ed25519 signing key (0600, never inside a store)."""
    from replay.core import keys

    forbidden = tuple(p for p in (Path(state["store"] or "snapshots"),) if p.exists())
    path = keys.init_key(out, forbidden=forbidden)
    if as_json:
        render.emit_json({"private": str(path), "public": str(keys.public_path(path))})
    else:
        render.console.print(f"signing key {path} (public key {keys.public_path(path)})")


@app.command()
@handled
def checkpoint(
    key: KeyOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the signed tree head (JSON) to this file: keep it outside "
            "the store, then `verify --store --checkpoint FILE` proves the history "
            "only grew since.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign the ledger's current tree head (size + Merkle root)."""
    from replay.evidence.checks import checkpoint as sign_head

    cp = sign_head(open_store(), key, out=out)
    if as_json:
        render.emit_json(cp.as_json())
    else:
        render.console.print(
            f"checkpoint: {cp.tree_size} entries, root {cp.root}, signed by {cp.key_id}",
            highlight=False,
        )


@app.command()
@handled
def seal(
    key: KeyOpt = None,
    every: Annotated[
        float | None,
        typer.Option(
            "--every",
            min=0.1,
            help="Keep sealing, every SECONDS, until interrupted (a sealer beside the writers).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Seal the runs writers left on an S3 store into the next signed epoch of its ledger."""
    import time

    from replay.evidence.checks import seal as seal_pending

    store = open_store()
    while True:
        epoch = seal_pending(store, key)
        sealed = {
            "epoch": epoch.number if epoch else None,
            "runs": epoch.lines.count(b"\n") if epoch else 0,
            "tree_size": epoch.size if epoch else None,
            "root": epoch.root if epoch else None,
            "key_id": (epoch.checkpoint or {}).get("key_id") if epoch else None,
        }
        if as_json:
            render.emit_json(sealed)
        elif epoch is None:
            render.console.print("nothing to seal", highlight=False)
        else:
            render.console.print(
                f"epoch {epoch.number}: {sealed['runs']} runs sealed; the ledger holds "
                f"{epoch.size} entries, root {epoch.root}, signed by {sealed['key_id']}",
                highlight=False,
            )
        if every is None:
            return
        time.sleep(every)


@app.command()
@handled
def export(
    runs: Annotated[list[str] | None, typer.Argument(help="Run ids to export.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write.")] = Path(
        "evidence.bundle"
    ),
    since: Annotated[str | None, typer.Option(help="Window start (logical clock).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (logical clock).")] = None,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", "-p", help="With a window: only this pipeline.")
    ] = None,
    kind: KindOpt = "production",
    record: Annotated[str | None, typer.Option(help="The record the evidence is about.")] = None,
    redact: Annotated[
        str | None,
        typer.Option(help="Personal columns to replace by keyed pseudonyms, comma-separated."),
    ] = None,
    with_image: Annotated[
        bool,
        typer.Option(
            "--with-image",
            help="Add the image the runs were recorded in (docker save), so "
            "they replay offline in it.",
        ),
    ] = False,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a signed evidence bundle for runs or an incident window."""
    from replay.evidence.export import export as export_runs

    columns = [c.strip() for c in (redact or "").split(",") if c.strip()]
    with render.steps_progress(disable=as_json, doing="exporting") as tick:
        done = export_runs(
            open_store(),
            list(runs or []),
            out,
            since=parse_time(since) if since is not None else None,
            until=parse_time(until) if until is not None else None,
            pipeline=pipeline,
            kind=kinds.wanted(kind),
            key=key,
            question={"record": record, "time": since},
            redact=columns,
            with_image=with_image,
            progress=tick,
        )
    if as_json:
        render.emit_json(
            {
                "bundle": str(done.path),
                "runs": list(done.runs),
                "bytes": done.size,
                "key_id": done.key_id,
                "checkpoint": done.checkpoint.as_json(),
            }
        )
    else:
        render.console.print(
            f"wrote {done.path}: {len(done.runs)} runs, {done.files} files, "
            f"{done.size:,} bytes, signed by {done.key_id}",
            highlight=False,
        )


def _sealing(counts: dict[str, Any]) -> str:
    """What ``verify --store`` found of an S3 store's sealing."""
    s = counts.get("sealing")
    if not s:
        return ""
    return (
        f"; sealing: {s['epochs']} epochs seal the {s['sealed']} runs of {s['writers']} "
        f"writers exactly once ({s['unsealed']} not sealed yet)"
    )


def _not_reread(counts: dict[str, Any]) -> str:
    """What ``verify --store --skip-verified`` took from the earlier verification."""
    if counts.get("note"):
        return f"\n{counts['note']}"
    was = counts.get("earlier")
    if not was:
        return ""
    return (
        f"\nre-read: the {counts['runs'] - was['runs']} ledger entries after entry "
        f"{was['runs']}, their {counts['blocks']} blocks, {counts['objects']} new objects; "
        f"taken from the verification of {was['verified_at']}, not re-read: {was['blocks']} "
        f"blocks ({was['segment_bytes']:,} bytes of segments), {was['objects']} objects (the "
        f"ledger's first {was['ledger_bytes']:,} bytes were re-hashed)"
    )


@app.command()
@handled
def verify(
    bundle: Annotated[Path | None, typer.Argument(help="Evidence bundle to verify.")] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            help="Pin exactly this public key: the bundle must be signed by it (the trust store "
            "is not read)."
        ),
    ] = None,
    insecure_any_signer: Annotated[
        bool,
        typer.Option(
            "--insecure-any-signer",
            help="Check only that the bundle is consistent, whoever signed it (prints a warning).",
        ),
    ] = False,
    store_check: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Check every object, segment, manifest and checkpoint of the store; "
            "its checkpoints must be signed by the pinned key (--key, else the "
            "trust store).",
        ),
    ] = False,
    head: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="With --store: a signed tree head kept outside the store "
            "(`checkpoint --out`); the ledger must have only grown since.",
        ),
    ] = None,
    skip_verified: Annotated[
        bool,
        typer.Option(
            "--skip-verified",
            help="With --store: re-read only what was added since the last verification; "
            "bytes verified then are not re-read.",
        ),
    ] = False,
    extract: Annotated[
        Path | None,
        typer.Option(
            help="After a successful verification, write the bundle's files into this folder."
        ),
    ] = None,
    witnesses: Annotated[
        int,
        typer.Option(
            "--witnesses",
            min=0,
            help="With --store: the latest checkpoint must carry valid "
            "cosignatures by at least N distinct pinned witness keys "
            "(`replay witness cosign`).",
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Verify a store (--store) or an evidence bundle and its signer; exit 1 on the first
    failure, 14 when the bundle is consistent but no pinned key signed it, 15 when it is
    refused unread (not a canonical bundle of the layout, over a limit, misshapen JSON)."""
    from replay.errors import (
        RESTORE,
        CorruptionError,
        NotFoundError,
        UntrustedSignerError,
        UsageError,
    )
    from replay.evidence.checks import verify as check

    if not store_check and bundle is None:
        raise UsageError("nothing to verify", hint="give a BUNDLE, or --store")
    if head is not None and not store_check:
        raise UsageError("--checkpoint checks a store", hint="add --store")
    if witnesses and not store_check:
        raise UsageError("--witnesses checks a store", hint="add --store")
    if skip_verified and not store_check:
        raise UsageError("--skip-verified checks a store", hint="add --store")
    if store_check:
        if insecure_any_signer:
            render.errors.print(
                "warning: checkpoint signers not checked (--insecure-any-signer)",
                markup=False,
                highlight=False,
            )
        pin = _read_key(key)
        try:
            with render.steps_progress(disable=as_json) as tick:
                counts = check(
                    open_store(),
                    key=pin,
                    any_signer=insecure_any_signer,
                    head=head,
                    witnesses=witnesses,
                    progress=tick,
                    skip_verified=skip_verified,
                )
        except (CorruptionError, NotFoundError, UntrustedSignerError) as exc:
            # What to do next, here: a corruption's own hint says to run this very check.
            hint = RESTORE if exc.hint == CorruptionError.LIST else exc.hint
            said = f"{exc.message} — {hint}" if hint else exc.message
            if as_json:
                render.emit_json(
                    {
                        "ok": False,
                        "error": said,
                        "untrusted": isinstance(exc, UntrustedSignerError),
                    }
                )
            else:
                render.console.print(f"[red]FAIL[/red] {render.escape(said)}", highlight=False)
            raise typer.Exit(
                exc.exit_code if isinstance(exc, UntrustedSignerError) else 1
            ) from None
        if as_json:
            render.emit_json({"ok": True, **counts})
        else:
            render.console.print(
                f"[green]OK[/green] {counts['objects']} objects, {counts['runs']} ledger "
                f"entries, {counts['blocks']} blocks, {counts['checkpoints']} checkpoints"
                + (f", {counts['witnesses']} witnesses" if witnesses else "")
                + f"; catalog: {counts['catalog']}"
                + _sealing(counts)
                + _not_reread(counts),
                highlight=False,
            )
    if bundle is not None:
        verified = check(bundle, key=_read_key(key), any_signer=insecure_any_signer)
        _print_verification(verified, as_json)
        if verified.untrusted:
            raise typer.Exit(UntrustedSignerError.exit_code)
        if verified.refused:  # unsafe, malformed or over a limit: not read, let alone checked
            from replay.evidence.bundle import MalformedBundleError

            raise typer.Exit(MalformedBundleError.exit_code)
        if not verified.ok:
            raise typer.Exit(1)
        if extract is not None:
            from replay.evidence.bundle import extract as write_files

            write_files(verified.files, extract)
            if not as_json:
                render.console.print(f"extracted {len(verified.files)} files into {extract}")


def _print_verification(check: "Verification", as_json: bool) -> None:
    for warning in check.warnings:  # on stderr, so a script reading stdout still sees it
        render.errors.print(f"warning: {warning}", markup=False, highlight=False)
    # A failed check carries what to do about it: the hint of the error that failed it.
    rows = [(part, ok, detail, "" if ok else check.hint) for part, ok, detail in check.checks]
    if as_json:
        render.emit_json(
            {
                "ok": check.ok,
                "failure": check.failure,
                "runs": check.runs,
                "signer": check.signer,
                "pinned": check.pinned,
                "untrusted": check.untrusted,
                "checks": [{"part": p, "ok": ok, "detail": d, "hint": h} for p, ok, d, h in rows],
            }
        )
        return
    for part, ok, detail, hint in rows:
        mark = "[green]OK  [/green]" if ok else "[red]FAIL[/red]"
        said = f"{detail} — {hint}" if hint else detail
        render.console.print(f"{mark} {part}  {render.escape(said)}", highlight=False)


trust_app = typer.Typer(
    rich_markup_mode=PLAIN,
    no_args_is_help=True,
    help="Trusted signers: the public keys whose bundles verify and run --bundle accept.",
)
app.add_typer(trust_app, name="trust")


@trust_app.command("add")
@handled
def trust_add(
    pem: Annotated[Path, typer.Argument(help="The signer's public key (PEM), from the signer.")],
    name: Annotated[str, typer.Option("--name", help='Who it is, e.g. "Bank X model risk".')],
    as_json: JsonOpt = False,
) -> None:
    """Trust a signer: bundles it signed verify, and replay from them is allowed."""
    from replay.core import trust

    added = trust.add(pem, name)
    if as_json:
        render.emit_json(added.as_json())
    else:
        render.console.print(
            f"trusted {added.key_id} as {added.name!r} ({added.path})",
            markup=False,
            highlight=False,
        )


@trust_app.command("list")
@handled
def trust_list(as_json: JsonOpt = False) -> None:
    """The trusted signers: the trust store's, then REPLAY_TRUSTED_KEYS's."""
    from replay.core import trust

    found = trust.list()
    if as_json:
        render.emit_json([k.as_json() for k in found])
        return
    if not found:
        render.console.print(
            f"no trusted signer: add one with `replay trust add PUB.pem --name "
            f"NAME` (trust store {trust.folder()})",
            markup=False,
            highlight=False,
        )
    for k in found:
        render.console.print(
            f"{k.key_id}  {k.name}  ({k.source}: {k.path})", markup=False, highlight=False
        )


@trust_app.command("remove")
@handled
def trust_remove(
    key_id_or_name: Annotated[
        str,
        typer.Argument(help="The name, key id or a unique prefix of it (8 hex digits or more)."),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Stop trusting a signer of the trust store."""
    from replay.core import trust

    removed = trust.remove(key_id_or_name)
    still = [k for k in trust.list() if k.key_id == removed.key_id]
    if as_json:
        render.emit_json({**removed.as_json(), "still_trusted_by": [k.source for k in still]})
        return
    render.console.print(
        f"no longer trusted: {removed.key_id} ({removed.name!r})", markup=False, highlight=False
    )
    for k in still:
        render.console.print(
            f"still trusted through {k.source}: {k.path}", markup=False, highlight=False
        )


@trust_app.command("allow-store")
@handled
def trust_allow_store(
    path: Annotated[Path, typer.Argument(help="A store folder another user owns.")],
    as_json: JsonOpt = False,
) -> None:
    """Open a store another user owns (as git's safe.directory): trust everyone who can write
    it, since its files decide what a replay runs."""
    from replay.core import trust

    listed = trust.allow_store(path)
    if as_json:
        render.emit_json({"allowed": os.path.realpath(path), "list": str(listed)})
        return
    render.console.print(
        f"allowed {os.path.realpath(path)} (in {listed})", markup=False, highlight=False
    )

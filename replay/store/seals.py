"""Sealing epochs: the one ledger of a store on object storage, built from its writers' logs.

    seal/<epoch:012d>.jsonl   a header line, the ledger lines this epoch adds, then their
                              catalog lines (``replay.store.rows``, passed on from writers),
                              as one compressed Arrow table (``rows.packed``)

Writers PUT their own log objects (``replay.store.shards``) and never meet. A sealer reads
every writer's objects past the heads of the last epoch, chains their lines into ledger
entries after the last sealed one (the local store's own entry format: ``seq``, ``prev``,
``hash``, the run's manifest digest and block), and creates the next epoch's object with
``If-None-Match``. Its header holds every writer's head, the tree size, the Merkle root over
the whole ledger (carried as a frontier of at most log2 n hashes, so no sealer reads old
entries), the digest of the previous epoch's object and, when the sealer has a signing key,
a checkpoint of that root (also kept in ``checkpoints/``, where verify, export and witnesses
look for them).

Any number of sealers is safe: two racing for an epoch's name cannot both create it; the
loser reads the winner's epoch and seals only what is still past its heads. A sealer killed
before its PUT left nothing; after it, a whole epoch. Each writer's lines are sealed in
order, exactly once, because heads only move forward and each epoch names its predecessor.
A writer's head leaves the headers only after it retired and its names left ``writers/``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Collection, Container, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from replay.core import keys, merkle
from replay.core.digest import canonical_json, sha256
from replay.errors import CorruptionError, ReplayError
from replay.store import checkpoint, rows, shards
from replay.store.fs import LocalFS
from replay.store.ledger import GENESIS, chained, entry_hash, hash_holds
from replay.store.s3 import S3FS
from replay.store.segments import FOLDER as SEGMENTS

FOLDER = "seal"
SUFFIX = ".jsonl"
FORMAT = 1
READERS = 8  # log objects read at once by a sealer
# A writer whose listing found nothing this many seals in a row is dormant (likely killed:
# a process that exits says so and is retired): a sealer then lists it once in
# DORMANT_EVERY seals, unless asked for a full listing (a writer sealing its own runs).
QUIET_SEALS = 64
DORMANT_EVERY = 16
# A dormant writer silent this long (by S3's stamps of its last object or registration) is
# said done by a sealer, which writes its ``.done``: one killed without retiring would stay
# in every epoch's header for ever. Twice ``shards.RENEW``, after which a writer that still
# writes takes a new identity, so no run of a writer still writing is left out.
LEASE = 2 * shards.RENEW
MEMORY = "ledger/sealer.json"  # in a reader's local mirror: what its sealers last saw


@dataclass(frozen=True)
class Head:
    objects: int  # the writer's objects sealed so far
    wseq: int  # its lines sealed so far
    hash: str  # the hash of its last sealed line
    retired: bool = False  # all of them: its process said it was done, and was sealed after
    # A retired writer's head is carried until its names under ``writers/`` are deleted (by
    # the next sealer that finds it retired), then dropped: headers and listings stay the
    # size of the writers still running, not of every process that ever wrote.

    def as_json(self) -> list[Any]:
        return [self.objects, self.wseq, self.hash, *([1] if self.retired else [])]


@dataclass(frozen=True)
class Epoch:
    number: int
    digest: str  # sha256 of this epoch's object (what the next one names as ``prev``)
    prev: str  # the digest of the epoch before it
    heads: dict[str, Head]
    size: int  # ledger entries sealed up to here
    last: str  # the hash of the last of them
    frontier: list[str] = field(default_factory=list)  # hex, see merkle.Frontier
    checkpoint: dict[str, Any] | None = None
    lines: bytes = b""  # the ledger lines this epoch added
    packed: bytes = b""  # their catalog lines as sealed (rows.packed; derived: a mirror
    # keeps them so, and ingest checks each against its entry)

    @property
    def root(self) -> str:
        return "sha256:" + self._tree().root().hex()

    def _tree(self) -> merkle.Frontier:
        return merkle.Frontier(self.size, [bytes.fromhex(h) for h in self.frontier])


NONE = Epoch(0, GENESIS, GENESIS, {}, 0, GENESIS)


def name(number: int) -> str:
    return f"{FOLDER}/{number:012d}{SUFFIX}"


def read(fs: S3FS, number: int) -> Epoch | None:
    """Epoch ``number``, checked to be well formed; None when it does not exist."""
    try:
        data = fs.read(name(number))
    except FileNotFoundError:
        return None
    return parse(fs.where(name(number)), number, data)


def parse(where: str, number: int, data: bytes) -> Epoch:
    cut = data.find(b"\n")
    cut = len(data) if cut < 0 else cut
    rest = memoryview(data)[cut + 1 :]  # not copied: the ledger lines and catalog lines are
    try:
        h = json.loads(data[:cut])
        n = h["ledger_bytes"]
        epoch = Epoch(
            number,
            sha256(data),
            str(h["prev"]),
            {w: Head(int(o), int(s), str(x), bool(r)) for w, (o, s, x, *r) in h["heads"].items()},
            int(h["tree_size"]),
            str(h["last"]),
            [str(x) for x in h["frontier"]],
            h.get("checkpoint"),
            bytes(rest[:n]),
            bytes(rest[n:]),  # left packed: a query that reads an epoch for its heads does not
        )  # unpack ~10 MB of lines, nor a mirror, which keeps them packed
        ok = h["format"] == FORMAT and h["epoch"] == number and epoch.root == h["root"]
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise CorruptionError(where, "is not a well-formed sealing epoch")
    return epoch


def latest(
    fs: S3FS, known: Epoch = NONE, seen: int = 0, each: Callable[[Epoch], object] = lambda _: None
) -> Epoch:
    """The last epoch sealed (from ``known`` on: one request per newer epoch, plus one
    listing when nothing is known: of the epochs after ``seen``, one this process's cache
    saw, as a store sealed every second holds 86,400 more epochs a day, a LIST per 1,000).
    ``each`` is given every epoch read, as it is: a mirror takes it while the next is
    looked for."""
    epoch = known
    if epoch is NONE:
        top = max(_numbers(fs, seen), default=seen)
        found = read(fs, top) if top else None  # None: not the store this cache saw
        epoch = found if found is not None else NONE  # (its bucket made anew?): walk it
        if found is not None:
            each(found)
    while (after := read(fs, epoch.number + 1)) is not None:
        epoch = after
        each(epoch)
    return epoch


def following(fs: S3FS, number: int, known: Epoch | None = None) -> Iterator[Epoch]:
    """The epochs sealed after epoch ``number``, in order, up to the first missing: listed
    once, then read READERS at a time (a reader catching up on a day of epochs sealed every
    half second has thousands to read; one after another they took ~10 ms each). Up to
    ``known`` when given, the last a sealer found: numbered one by one up to it, nothing is
    listed, and it is not read again."""
    numbers = _numbers(fs, number) if known is None else range(number + 1, known.number + 1)
    ahead: deque[Future[Epoch | None]] = deque()
    with ThreadPoolExecutor(READERS) as pool:
        for n, stem in enumerate(numbers, number + 1):
            if stem != n:
                break  # a gap: no epoch after it follows the chain
            if known is not None and known.number == n:
                done: Future[Epoch | None] = Future()
                done.set_result(known)
                ahead.append(done)
            else:
                ahead.append(pool.submit(read, fs, n))
            if len(ahead) > 2 * READERS:
                if (epoch := ahead.popleft().result()) is None:
                    return  # deleted since it was listed: none after it follows either
                yield epoch
        while ahead and (epoch := ahead.popleft().result()) is not None:
            yield epoch


def _numbers(fs: S3FS, number: int) -> Iterator[int]:
    """The numbers of the epochs listed after epoch ``number``."""
    for n in fs.names(FOLDER, start_after=name(number).removeprefix(FOLDER + "/")):
        stem = n.removesuffix(SUFFIX)
        if n.endswith(SUFFIX) and stem.isdigit():
            yield int(stem)


@dataclass(frozen=True)
class Pending:
    name: str  # the log object
    writer: str
    number: int  # its number among the writer's objects
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class Found:
    objects: list[Pending]  # every writer's, each writer's in order
    retiring: set[str]  # writers whose last object is among them or sealed already
    listed: list[str]  # the writers whose objects were listed
    registered: dict[str, int]  # the writers named under ``writers/`` (listed after the epoch
    # was read), each with S3's stamp of its name (ns)


def pending(fs: S3FS, epoch: Epoch, skip: Container[str] = ()) -> Found:
    """Every writer's objects past ``epoch``'s heads, in order, each checked to continue its
    writer's chain (one LIST per writer still writing, one GET per object). Writers in
    ``skip`` are not listed, unless they are done: a done writer is listed once more, then
    retired."""
    stamps = fs.mtimes(shards.WRITERS)
    names = sorted(stamps)
    done = {n.removesuffix(shards.DONE) for n in names if n.endswith(shards.DONE)}
    listed = [
        w
        for w in names
        if not (w.endswith(shards.DONE) or epoch.heads.get(w, Head(0, 0, GENESIS)).retired)
        and (w not in skip or w in done)
    ]

    def objects(writer: str) -> list[tuple[str, str]]:
        number, out = epoch.heads.get(writer, Head(0, 0, GENESIS)).objects, []
        after = shards.object_name(writer, number) if number else ""
        # Its own names only: a LIST past a name also returns up to 1,000 of other writers'.
        for obj in fs.names(SEGMENTS, start_after=after, starting=f"{writer}-"):
            if shards.parse_name(obj) != (writer, number + 1):
                break  # past a gap: a failed PUT ended this writer
            out.append((writer, obj))
            number += 1
        return out

    with ThreadPoolExecutor(READERS) as pool:  # a LIST a writer, several at once
        found = [obj for objs in pool.map(objects, listed) for obj in objs]
    # Listed after their ".done" appeared: nothing of theirs can follow what was found.
    retiring = {w for w in done if not epoch.heads.get(w, Head(0, 0, GENESIS)).retired}
    registered = {n.removesuffix(shards.DONE): stamps[n] for n in reversed(names)}
    return Found(_read(fs, epoch.heads, found), retiring, listed, registered)


def _read(fs: S3FS, heads: dict[str, Head], found: list[tuple[str, str]]) -> list[Pending]:
    """The log objects ``found`` ((writer, name), each writer's in order from its head in
    ``heads`` on), each checked to continue its writer's chain."""
    # One GET an object, several at once: a durable writer PUTs an object per run.
    with ThreadPoolExecutor(READERS) as pool:
        read = list(pool.map(lambda wo: shards.read_lines(fs, wo[1]), found))
    out: list[Pending] = []
    for (writer, obj), lines in zip(found, read, strict=True):
        before = out[-1] if out and out[-1].writer == writer else None
        if before is None:
            start = heads.get(writer, Head(0, 0, GENESIS))
            number, wseq, prev = start.objects, start.wseq, start.hash
        else:
            number, wseq, prev = before.number, before.lines[-1]["wseq"], before.lines[-1]["hash"]
        for line in lines:
            if not (
                line.get("writer") == writer
                and line.get("wseq") == wseq + 1
                and line.get("prev") == prev
                and hash_holds(line)
            ):
                raise CorruptionError(
                    fs.where(f"{SEGMENTS}/{obj}"),
                    f"line {wseq + 1} of writer {writer} does not continue its chain",
                )
            wseq, prev = line["wseq"], line["hash"]
        out.append(Pending(obj, writer, number + 1, lines))
    return out


def build(
    epoch: Epoch, found: Found, private: Ed25519PrivateKey | None = None
) -> tuple[Epoch, bytes]:
    """The epoch after ``epoch`` sealing what was ``found``, and its object's bytes."""
    tree = epoch._tree()
    heads = dict(epoch.heads)
    new = found.objects
    seq, prev, out, index = epoch.size, epoch.last, [], []
    for p in new:
        for line in p.lines:
            entry = {
                "run_id": line["run_id"],
                "manifest_sha256": line["manifest_sha256"],
                "block": line["block"],
                "seq": seq + 1,
                "prev": prev,
            }
            entry["hash"] = prev = entry_hash(entry)
            seq += 1
            raw = canonical_json(entry)
            tree.append(merkle.leaf_hash(raw))
            out.append(raw + b"\n")
            row = rows.sealed(line["row"], seq) if isinstance(line.get("row"), str) else None
            if row is not None:
                index.append(row)
        last = p.lines[-1]  # a group holds one run at least
        heads[p.writer] = Head(p.number, int(last["wseq"]), str(last["hash"]))
    for writer in found.retiring:
        heads[writer] = replace(heads.get(writer, Head(0, 0, GENESIS)), retired=True)
    # Dropped once its names are gone: the listing was made after ``epoch`` was read, and
    # ids never come back, so no sealer building on what follows can find it registered.
    for writer in [w for w, h in heads.items() if h.retired and w not in found.registered]:
        del heads[writer]
    root = "sha256:" + tree.root().hex()
    header: dict[str, Any] = {
        "format": FORMAT,
        "epoch": epoch.number + 1,
        "prev": epoch.digest,
        "heads": {w: h.as_json() for w, h in sorted(heads.items())},
        "tree_size": seq,
        "root": root,
        "last": prev,
        "frontier": [h.hex() for h in tree.hashes],
        "ledger_bytes": sum(len(x) for x in out),
    }
    if private is not None:
        header["checkpoint"] = checkpoint.signed(private, seq, root).as_json()
    body = canonical_json(header) + b"\n" + b"".join(out) + rows.packed(index)
    return parse("(new epoch)", epoch.number + 1, body), body


class Sealer:
    """Seals a store's pending runs, epoch after epoch; keeps what it last saw."""

    def __init__(
        self,
        fs: S3FS,
        private: Ed25519PrivateKey | None = None,
        known: Epoch | None = None,
        memory: LocalFS | None = None,
    ) -> None:
        self.fs, self.private = fs, private
        self.epoch = known or NONE
        self.quiet: dict[str, int] = {}  # seals in a row that found nothing of a writer
        self.seals = 0
        self.kept = 0  # the last epoch whose checkpoint this sealer knows is kept
        self.deletes = True  # until the store refuses one (a write-once bucket)
        # Where the counts above outlive the process: every writer killed without retiring
        # stays listed, so a new process's first seal (each `replay find`'s) would LIST them
        # all. Only a cache: lost or unreadable, the sealer starts counting afresh.
        self.memory = memory
        self.seen = 0  # the last epoch the sealers of this cache saw: listings start there
        if memory is not None:
            try:
                saved = json.loads(memory.read(MEMORY))
                self.seals, self.seen = int(saved["seals"]), int(saved.get("epoch", 0))
                self.quiet = {str(w): int(n) for w, n in saved["quiet"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass

    def seal(self, *, full: bool = False, caught_up: bool = False) -> Epoch | None:
        """Seal every writer's new objects into the next epoch; None when none was pending.
        When another sealer wins the race for a name, catch up from its epoch and go on.
        Dormant writers (QUIET_SEALS) are listed once in DORMANT_EVERY seals, or if ``full``.
        ``caught_up``: ``catch_up`` has just found the last epoch."""
        if not caught_up:
            self.catch_up()
        self.seals += 1
        dormant = (
            set()
            if full or self.seals % DORMANT_EVERY == 0
            else {w for w, n in self.quiet.items() if n >= QUIET_SEALS}
        )
        while True:
            found = pending(self.fs, self.epoch, dormant)
            active = {p.writer for p in found.objects}
            for writer in found.listed:
                self.quiet[writer] = 0 if writer in active else self.quiet.get(writer, 0) + 1
            self._expire(found)
            self._forget(found.registered)
            if self.memory is not None:
                self._remember(self.memory)
            if not found.objects:
                return None
            epoch, body = build(self.epoch, found, self.private)
            if self.fs.put_if_absent(name(epoch.number), body):
                self.epoch = epoch
                self._keep(epoch, new=True)
                return epoch
            self.epoch = latest(self.fs, self.epoch)
            self._keep(self.epoch)

    def catch_up(self, each: Callable[[Epoch], object] = lambda _: None) -> Epoch:
        """The last epoch sealed, which the next seal follows (its checkpoint kept); ``each``
        is given every epoch read on the way, as ``latest`` reads it."""
        self.epoch = latest(self.fs, self.epoch, self.seen, each)
        self._keep(self.epoch)
        return self.epoch

    def _expire(self, found: Found) -> None:
        """Say each dormant writer silent past LEASE is done (its ``.done``, which the next
        seal finds, then retires, deletes and drops as any other): the S3 stamps of its name
        and of its last sealed object, one HEAD per such writer listed."""
        active = {p.writer for p in found.objects}
        limit = time.time_ns() - LEASE * 10**9
        for writer in found.listed:
            if (
                writer in active
                or writer in found.retiring
                or self.quiet.get(writer, 0) < QUIET_SEALS
                or found.registered[writer] > limit
            ):
                continue
            head = self.epoch.heads.get(writer, Head(0, 0, GENESIS))
            try:
                last = shards.object_name(writer, head.objects)
                if head.objects and self.fs.modified(f"{SEGMENTS}/{last}") > limit:
                    continue
            except FileNotFoundError:
                continue  # the store lost a sealed object: verify names it; nothing to end
            said = canonical_json({"expired": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            self.fs.put_if_absent(f"{shards.WRITERS}/{writer}{shards.DONE}", said)

    def _forget(self, registered: Collection[str]) -> None:
        """Delete the names of the writers ``self.epoch`` retired (the ``.done`` first: a
        sealer killed between the two leaves a retired writer that is skipped, and deleted by
        the next seal), so that the epoch after drops their heads (``build``). In bulk: a
        rolling restart of 300 replicas took 2.5 s one DELETE after another."""
        heads = self.epoch.heads
        gone = sorted(w for w in registered if w in heads and heads[w].retired)
        self.quiet = {w: n for w, n in self.quiet.items() if w in registered and w not in gone}
        try:
            for suffix in (shards.DONE, "") if gone and self.deletes else ():
                self.fs.remove_many([f"{shards.WRITERS}/{w}{suffix}" for w in gone])
        except ReplayError:  # a bucket that keeps what it holds: heads keep growing
            self.deletes = False

    def _remember(self, memory: LocalFS) -> None:
        saved = {"seals": self.seals, "quiet": self.quiet, "epoch": self.epoch.number}
        memory.write_atomic(MEMORY, canonical_json(saved))

    def _keep(self, epoch: Epoch, *, new: bool = False) -> None:
        """Keep ``epoch``'s signed checkpoint in ``checkpoints/``, where verify, export and
        witnesses look (derived from the epoch). Checked once per epoch this sealer finds
        (one HEAD), not only when it PUT the epoch (``new``): the sealer that did may have
        been killed before keeping it, leaving the ledger's tail signed nowhere they look."""
        if epoch.checkpoint is None or epoch.number <= self.kept:
            return
        cp = checkpoint.Checkpoint.from_json(epoch.checkpoint)
        if new or not self.fs.exists(checkpoint.name_of(cp)):
            private = self.private
            if private is not None and keys.key_id(private.public_key()) == cp.key_id:
                pem = keys.public_pem(private.public_key())
            else:
                try:
                    pem = self.fs.read(checkpoint.key_name(cp.key_id))
                except FileNotFoundError:
                    return  # a key the store does not hold: its owner's next seal keeps it
            checkpoint.keep(self.fs, cp, pem)
        self.kept = epoch.number


def take(
    where: str, before: Epoch, epoch: Epoch, tree: merkle.Frontier
) -> Iterator[dict[str, Any]]:
    """The entries of ``epoch``, checked to follow ``before`` (whose ledger ``tree`` holds,
    and is grown by them) and to be what its header seals: chain, size, last hash, root."""
    _follows(where, before, epoch)
    prev = before.last
    for body in _lines(where, epoch.lines):
        try:
            entry = orjson.loads(body)
        except orjson.JSONDecodeError:
            entry = None
        if not chained(body, entry, tree.size, prev, lambda _block: True):
            raise CorruptionError(where, f"entry {tree.size + 1} does not continue the chain")
        prev = entry["hash"]
        tree.append(merkle.leaf_hash(body))
        yield entry
    _seals(where, epoch, tree, prev)


def copy(where: str, before: Epoch, epoch: Epoch, tree: merkle.Frontier) -> None:
    """Check that ``epoch``'s lines are, byte for byte, what its header seals after
    ``before`` (whose ledger ``tree`` holds, and is grown by them): it names ``before``, its
    first line continues ``before``'s last entry, its last is the one it names, and the Merkle
    root over every line is its root. What a mirror takes this way is exactly the sealed
    ledger. What each entry says of itself (its canonical form and hash, the chain inside the
    epoch: ~55 ms a 10,000-run epoch, more than a reader's ingest of it) is checked as on a
    folder store: before anything a run names is loaded (``replay.store.history``), and by
    ``take``, which ``verify --store`` runs over every epoch."""
    _follows(where, before, epoch)
    bodies = _lines(where, epoch.lines)
    first, last = (_entry(bodies[0]), _entry(bodies[-1])) if bodies else ({}, {"hash": before.last})
    if bodies and (first.get("seq"), first.get("prev")) != (before.size + 1, before.last):
        raise CorruptionError(where, f"entry {before.size + 1} does not continue the chain")
    tree.extend([merkle.leaf_hash(body) for body in bodies])
    _seals(where, epoch, tree, last.get("hash"))


def _follows(where: str, before: Epoch, epoch: Epoch) -> None:
    if epoch.prev != before.digest:
        raise CorruptionError(where, "does not follow the epoch before it")


def _seals(where: str, epoch: Epoch, tree: merkle.Frontier, last: object) -> None:
    """That the ledger ``tree`` (whose last entry's hash is ``last``) is what ``epoch`` seals."""
    if (tree.size, last, "sha256:" + tree.root().hex()) != (epoch.size, epoch.last, epoch.root):
        raise CorruptionError(where, "does not seal the entries it holds (size, last or root)")


def _lines(where: str, data: bytes) -> list[bytes]:
    """An epoch's ledger lines, each without the newline that ends it: the root over them
    then covers every byte (``splitlines`` would also cut at a carriage return, and let the
    last line lack its newline, joining the next epoch's first line in the ledger)."""
    if data and not data.endswith(b"\n"):
        raise CorruptionError(where, "does not seal the entries it holds (its last line is cut)")
    return data.split(b"\n")[:-1]


def _entry(body: bytes) -> dict[str, Any]:
    try:
        entry = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return entry if isinstance(entry, dict) else {}


@dataclass(frozen=True)
class Audit:
    epochs: int
    writers: int
    runs: int  # ledger entries, each a writer's line sealed exactly once
    unsealed: int  # writers' lines past the last epoch's heads (a seal will take them)
    ledger_sha256: str  # of every epoch's lines in order: the ledger a mirror must hold
    ledger_bytes: int


def audit(fs: S3FS) -> Audit:
    """Check a store's sealing from the bucket alone: every epoch names the one before it and
    seals what its header says (chain, size, root); every line of every writer's objects up
    to the last epoch's heads is in the ledger exactly once, in its writer's order, and the
    ledger holds nothing else. CorruptionError names the first object that says otherwise."""
    digest, size, epoch, tree = hashlib.sha256(), 0, NONE, merkle.Frontier()
    where: dict[tuple[str, str, str], int] = {}  # (block, run, manifest) -> ledger seq
    heads: dict[str, Head] = {}  # each writer's last, also once an epoch dropped it
    for after in following(fs, 0):
        for entry in take(fs.where(name(after.number)), epoch, after, tree):
            where[(entry["block"]["segment"], entry["run_id"], entry["manifest_sha256"])] = (
                tree.size
            )
        for writer, head in epoch.heads.items():
            if writer not in after.heads and not head.retired:
                raise CorruptionError(
                    fs.where(name(after.number)), f"drops writer {writer}, which had not retired"
                )
        for writer in after.heads.keys() - epoch.heads.keys():
            if heads.get(writer, Head(0, 0, GENESIS)).retired:
                raise CorruptionError(
                    fs.where(name(after.number)), f"names writer {writer} again after it retired"
                )
        heads |= after.heads
        digest.update(after.lines)
        size += len(after.lines)
        epoch = after
    seq, taken, unsealed = tree.size, 0, 0
    last: dict[str, int] = {}  # each writer's last line's place in the ledger
    for p in _read(fs, {}, _logs(fs)):
        head = heads.get(p.writer, Head(0, 0, GENESIS))
        for line in p.lines:
            if line["wseq"] > head.wseq:
                unsealed += 1
                continue
            got = where.get((line["block"]["segment"], line["run_id"], line["manifest_sha256"]), 0)
            if got <= last.get(p.writer, 0):
                raise CorruptionError(
                    fs.where(f"{SEGMENTS}/{p.name}"),
                    f"run {line['run_id']} of writer {p.writer} is not sealed once, in its order",
                )
            last[p.writer], taken = got, taken + 1
    writers = len(last)
    if taken != seq or len(where) != seq:
        raise CorruptionError(
            fs.where(FOLDER), f"the ledger holds {seq} entries, the writers' logs {taken}"
        )
    return Audit(epoch.number, writers, seq, unsealed, "sha256:" + digest.hexdigest(), size)


def _logs(fs: S3FS) -> list[tuple[str, str]]:
    """Every writer's log objects, (writer, name), each writer's in order up to its first
    gap (as sealers take them), from the names in ``segments/``: retired writers' names are
    gone from ``writers/``."""
    out: list[tuple[str, str]] = []
    expected: dict[str, int] = {}
    for obj in fs.names(SEGMENTS):
        parsed = shards.parse_name(obj)
        if parsed is not None and parsed[1] == expected.get(parsed[0], 1):
            out.append((parsed[0], obj))
            expected[parsed[0]] = parsed[1] + 1
    return out

"""The fast check of a range of the trail: the database sends the stored rows in blocks, Python
recomputes every hash and follows both chains in one pass, in global order.

It only says whether the range is intact; on any difference, however small, the exact check
(`domain.check_global_chain`, `domain.check_account_chain`) reads the range again and names
the problem. So this pass may be strict and terse, but never lenient: a row it cannot read as
written is a difference. A long range is cut into stretches, each scanned by a child process
of its own (`python -m audit.scan`, on its own connection), since the hashing is Python's and
one process uses one core; the service joins the stretches where they meet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # the C encoder where there is one

import asyncpg

from audit.domain import GENESIS_HASH

# The columns each row carries, in order (l: the link, e: its entry, p: the personal part).
SCAN_COLUMNS = (
    "l.global_seq",
    "l.account_reference",
    "l.digest",
    "l.previous_hash",
    "l.hash",
    "e.account_id",
    "e.account_seq",
    "e.event_id",
    "e.grant_id",
    "e.occurred_at",
    "e.recorded_at",
    "e.personal_commitment",
    "e.account_previous_hash",
    "e.account_hash",
    "e.kind",
    "e.actor_type",
    "e.actor_id",
    "e.purpose",
    "e.outcome",
    "e.resource_type",
    "e.resource_id",
    "p.global_seq",
    "p.salt",
    "p.actor_name",
    "p.reason",
)
# The text that goes into the entry's or the personal part's JSON. A row where it holds a
# character JSON escapes (a quote, a backslash, a control character, tab and newline among
# them) comes as a JSON array of its values instead, escaped in Python; the rest, nearly all,
# come plain (tab-separated, a row a line) and go into the JSON as they are. The other text
# columns (hashes, references) only meet a comparison with a hex digest: a tab or a newline
# in one gives the row too many or too few values, and it is found different.
_JSON_TEXT = (
    "e.kind, e.actor_type, e.actor_id, e.purpose, e.outcome, e.resource_type, e.resource_id, "
    "e.personal_commitment, p.salt, p.actor_name, p.reason"
)
_PLAIN_VALUES = ", ".join(f"coalesce({c}::text, '')" for c in SCAN_COLUMNS)
_JSON_VALUES = ", ".join(f"{c}::text" for c in SCAN_COLUMNS)
_ROW_SQL = (
    f"CASE WHEN concat({_JSON_TEXT}) !~ '[\\x01-\\x1f\"\\\\]' "
    f"THEN concat_ws(E'\\t', {_PLAIN_VALUES}) "
    f"ELSE json_build_array({_JSON_VALUES})::text END"
)
# The scan reads times as text: in UTC and ISO style, whatever the server's defaults.
SCAN_SETTINGS = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'"
BLOCK = 2000
# One text value per block of BLOCK links: a million rows are five hundred messages, not a
# million (the driver's per-row cost, not the database's, bounds a plain read). Each block is
# its own range scan of the three primary keys; SCAN_SETTINGS are set first. (Composed of this
# module's constants only: S608 does not apply.)
SCAN_SQL = f"""
SELECT (
    SELECT string_agg({_ROW_SQL}, E'\\n' ORDER BY l.global_seq)
    FROM chain_link l
    LEFT JOIN audit_entry e
        ON e.global_seq = l.global_seq AND e.global_seq BETWEEN b AND b + {BLOCK - 1}
    LEFT JOIN audit_personal p
        ON p.global_seq = l.global_seq AND p.global_seq BETWEEN b AND b + {BLOCK - 1}
    WHERE l.global_seq BETWEEN b AND b + {BLOCK - 1} AND l.global_seq <= $2
)
FROM generate_series(CAST($1 AS bigint), CAST($2 AS bigint), {BLOCK}) AS b
"""  # noqa: S608

# An entry's canonical JSON (RFC 8785: keys sorted, compact) and its personal part's are made
# in `TrailScan.feed` (an f-string: twice as fast as a template), as `domain.canonical` makes
# them, byte for byte (a test holds them equal over hostile text).
_FULL_TIME = len("2030-01-02 03:04:05.123456+00")


def _time_parts(stored: str) -> tuple[str, str]:
    """PostgreSQL's ISO text of a UTC time ('2030-01-02 03:04:05.12+00') as the entries' JSON
    holds it (`domain.json_time`: 'T', six digits of fraction only when there is one, 'Z'):
    its date and its time of day."""
    fraction = stored[19:-3]
    return stored[:10], stored[11:19] + (fraction.ljust(7, "0") if fraction else "")


def _escaped(value: str) -> str:
    """A string's JSON escaping, without the quotes."""
    return str(encode_basestring(value))[1:-1]


@dataclass
class AccountSpan:
    """An account's entries the scan met: where they start and end in its chain."""

    first_seq: int
    first_previous: str
    last_seq: int
    last_hash: str


@dataclass
class TrailScan:
    """Both chains followed through a range, one block of rows at a time."""

    previous_hash: str  # the hash of the link before the range
    expected_seq: int  # the range's first global sequence
    purged: frozenset[str]  # purged accounts' references: their links have no entry
    purge_digests: dict[int, str]  # purge records' digests, by global sequence
    entries: int = 0
    links: int = 0
    accounts: dict[str, AccountSpan] = field(default_factory=dict)

    def feed(self, block: str) -> bool:
        """Check one block of rows; False at the first row that is not what the chains say
        it must be (the scan then stops). One loop, locals only: it runs a million times."""
        sha256, fromhex = hashlib.sha256, bytes.fromhex
        purged, accounts, width = self.purged, self.accounts, len(SCAN_COLUMNS)
        previous_hash, expected = self.previous_hash, self.expected_seq
        entries = links = 0
        last_recorded, recorded_parts = "", ("", "")
        try:
            for line in block.split("\n"):
                if line.startswith("["):  # a row with text JSON escapes
                    row = [_escaped(value) for value in _from_json(line)]
                else:
                    row = line.split("\t")
                if len(row) != width:
                    return False
                (global_seq, reference, digest, previous, link_hash, account, account_seq,
                 event_id, grant_id, occurred_at, recorded_at, commitment, account_previous,
                 account_hash, kind, actor_type, actor_id, purpose, outcome, resource_type,
                 resource_id, kept, salt, actor_name, reason) = row  # fmt: skip
                if global_seq != str(expected) or previous != previous_hash:
                    return False
                if sha256(fromhex(previous + digest)).hexdigest() != link_hash:
                    return False
                if not account:  # a link without its entry: a purged account's, or a purge
                    if reference not in purged and self.purge_digests.get(expected) != digest:
                        return False
                else:
                    if reference in purged:
                        return False
                    if recorded_at != last_recorded:  # one batch's entries share it
                        last_recorded, recorded_parts = recorded_at, _time_parts(recorded_at)
                    occurred_day, occurred_time = (
                        (occurred_at[:10], occurred_at[11:26])
                        if len(occurred_at) == _FULL_TIME
                        else _time_parts(occurred_at)
                    )
                    recorded_day, recorded_time = recorded_parts
                    grant = f'"{grant_id}"' if grant_id else "null"
                    entry = (
                        f'{{"account_id":"{account}","account_seq":{account_seq},'
                        f'"actor_id":"{actor_id}","actor_type":"{actor_type}",'
                        f'"event_id":"{event_id}","grant_id":{grant},"kind":"{kind}",'
                        f'"occurred_at":"{occurred_day}T{occurred_time}Z",'
                        f'"outcome":"{outcome}","personal_commitment":"{commitment}",'
                        f'"purpose":"{purpose}","recorded_at":"{recorded_day}T{recorded_time}Z",'
                        f'"resource_id":"{resource_id}","resource_type":"{resource_type}"}}'
                    )
                    if sha256(entry.encode()).hexdigest() != digest:
                        return False
                    if sha256(fromhex(account_previous + digest)).hexdigest() != account_hash:
                        return False
                    if kept:  # the personal part is still there (not erased): it must match
                        personal = (
                            f'{{"actor_name":"{actor_name}","reason":"{reason}","salt":"{salt}"}}'
                        )
                        if sha256(personal.encode()).hexdigest() != commitment:
                            return False
                    sequence = int(account_seq)
                    span = accounts.get(account)
                    if span is None:
                        accounts[account] = AccountSpan(
                            sequence, account_previous, sequence, account_hash
                        )
                    elif span.last_seq + 1 != sequence or span.last_hash != account_previous:
                        return False
                    else:
                        span.last_seq, span.last_hash = sequence, account_hash
                    entries += 1
                links += 1
                previous_hash, expected = link_hash, expected + 1
        except ValueError:  # a value the row's form cannot hold (not hex, not a number)
            return False
        finally:
            self.previous_hash, self.expected_seq = previous_hash, expected
            self.entries, self.links = self.entries + entries, self.links + links
        return True

    def openings(self) -> Iterable[tuple[str, int, str]]:
        """Each account's first entry in the range that is not its chain's first: (account,
        the sequence before it, the hash that entry must have)."""
        for account, span in self.accounts.items():
            if span.first_seq > 1:
                yield account, span.first_seq - 1, span.first_previous

    def chains_start_at_genesis(self) -> bool:
        """Whether every account whose chain starts in the range starts at the genesis hash."""
        return all(
            span.first_previous == GENESIS_HASH
            for span in self.accounts.values()
            if span.first_seq == 1
        )


def _from_json(line: str) -> list[str]:
    """A row the database sent as a JSON array (its text held a tab or a newline)."""
    try:
        values = json.loads(line)
    except ValueError:
        return []
    return ["" if value is None else value for value in values]


@dataclass(frozen=True)
class ScanPart:
    """A stretch of the range for one process: its bounds and the hash of the link before."""

    first: int
    last: int
    previous_hash: str


async def scan_in_process(
    dsn: str, part: ScanPart, purged: frozenset[str], purge_digests: dict[int, str]
) -> TrailScan | None:
    """Scan one stretch in a child process of its own (`python -m audit.scan`): its scan's
    state at the end, or None if a row differs. The child imports this module only, and reads
    the database's URL from its standard input, not its command line, which others can see."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "audit.scan",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    request = {
        "dsn": dsn,
        "part": dataclasses.asdict(part),
        "purged": sorted(purged),
        "purge_digests": {str(seq): digest for seq, digest in purge_digests.items()},
    }
    answer, _ = await child.communicate(json.dumps(request).encode())
    if child.returncode != 0:
        raise RuntimeError(f"the scanning process exited with {child.returncode}")
    result = json.loads(answer)
    if result is None:
        return None
    scan = TrailScan(result["previous_hash"], result["expected_seq"], purged, purge_digests)
    scan.entries, scan.links = result["entries"], result["links"]
    scan.accounts = {a: AccountSpan(*span) for a, span in result["accounts"].items()}
    return scan


def _serve_one_scan() -> None:
    """The child's side of `scan_in_process`: one request on stdin, one answer on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    scan = asyncio.run(
        _scan_part(
            request["dsn"],
            ScanPart(**request["part"]),
            frozenset(request["purged"]),
            {int(seq): digest for seq, digest in request["purge_digests"].items()},
        )
    )
    answer = None
    if scan is not None:
        answer = {
            "previous_hash": scan.previous_hash,
            "expected_seq": scan.expected_seq,
            "entries": scan.entries,
            "links": scan.links,
            "accounts": {
                account: [span.first_seq, span.first_previous, span.last_seq, span.last_hash]
                for account, span in scan.accounts.items()
            },
        }
    sys.stdout.write(json.dumps(answer))


async def scan_stretch(
    connection: asyncpg.Connection,
    part: ScanPart,
    purged: frozenset[str],
    purge_digests: dict[int, str],
) -> TrailScan | None:
    """Scan one stretch on a connection inside a transaction: the scan's state at its end, or
    None at the first row that differs."""
    scan = TrailScan(part.previous_hash, part.first, purged, purge_digests)
    await connection.execute(SCAN_SETTINGS)
    async for record in connection.cursor(SCAN_SQL, part.first, part.last, prefetch=4):
        if record[0] is not None and not scan.feed(record[0]):
            return None
    return scan


async def _scan_part(
    dsn: str, part: ScanPart, purged: frozenset[str], purge_digests: dict[int, str]
) -> TrailScan | None:
    """A child's stretch, on a connection of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction(readonly=True):
            return await scan_stretch(connection, part, purged, purge_digests)
    finally:
        await connection.close()


if __name__ == "__main__":
    _serve_one_scan()

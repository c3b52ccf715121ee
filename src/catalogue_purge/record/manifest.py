"""Enforcement manifests: what a run did and why, in a form an auditor can verify offline.

One folder per run, written once, under <root>/runs/<policy-id>/<run-id>/:

    delisted-00000.parquet / .csv   one statement of reasons per delist outcome
    review-00000.parquet / .csv     the listings sent to a human
    exempted-00000.parquet / .csv   the listings an exemption kept, with its grounds
    report.html                     one page for people: counts, bars, top sellers, the parts
    manifest.json                   the run, the policy and its hash, the snapshot's fingerprint,
                                    counts, and every part with its size, rows and SHA-256
    digest.json                     SHA-256 of manifest.json, the run's sequence number for the
                                    policy and the SHA-256 of the previous run's digest.json
    digest.sig                      ECDSA_SHA_256 signature of digest.json (DER), by KMS
    public-key.pem                  to check it: openssl dgst -sha256 -verify public-key.pem
                                    -signature digest.sig digest.json

The digest is written last: a run folder without one is incomplete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from cryptography.hazmat.primitives import serialization

from catalogue_purge import aws
from catalogue_purge.detect.policy import Policy, category_rule_id, load_recorded
from catalogue_purge.detect.sweep import findings_dataset, read_quarantine, read_sweep_record
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
from catalogue_purge.enforce.penalties import PENALTY_SCHEMA
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.engine import connect, load_sql
from catalogue_purge.errors import OutcomesFailed, PurgeError
from catalogue_purge.record.audit import run_digests
from catalogue_purge.record.report import RunSummary, render_report
from catalogue_purge.storage import locate, parquet_bytes

PART_ROWS = 100_000
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection), the
# full-width forms included (some spreadsheets fold them), also after leading blanks, which
# some spreadsheets skip.
_FORMULA_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_BLANKS = " \t\r\n\u00a0\u3000"


class ManifestExists(PurgeError):
    exit_code = 7


class Signer(Protocol):
    key_id: str

    def sign(self, message: bytes) -> bytes:
        """DER-encoded ECDSA_SHA_256 signature of the message."""

    def public_key_pem(self) -> bytes: ...


@dataclass
class KmsSigner:
    """An asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY)."""

    client: Any
    key_id: str

    def sign(self, message: bytes) -> bytes:
        # RAW: KMS hashes the message itself (digest.json is far below KMS's 4 KB limit).
        response = self.client.sign(
            KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
        )
        return bytes(response["Signature"])

    def public_key_pem(self) -> bytes:
        der = self.client.get_public_key(KeyId=self.key_id)["PublicKey"]
        key = serialization.load_der_public_key(der)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _clauses(policy: Policy) -> pa.Table:
    return pa.table(
        {
            "rule_id": [r.id for r in policy.document.rules]
            + [category_rule_id(c.path) for c in policy.document.prohibited_categories],
            "clause": [r.clause for r in policy.document.rules]
            + [c.clause for c in policy.document.prohibited_categories],
        }
    )


def _exemptions(policy: Policy) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "exemption_id": ex.id,
                "reason": ex.reason,
                "granted_by": ex.granted_by,
                "granted_at": ex.granted_at,
                "expires": ex.expires,
            }
            for ex in policy.exemptions
        ],
        schema=pa.schema(
            [
                ("exemption_id", pa.string()),
                ("reason", pa.string()),
                ("granted_by", pa.string()),
                ("granted_at", pa.date32()),
                ("expires", pa.date32()),
            ]
        ),
    )


def stream_tables(
    findings: Any, outcomes: Any, policy: Policy, decided_at: datetime, part_rows: int = PART_ROWS
) -> dict[str, Iterator[pa.Table]]:
    """The delisted, review, exempted and shadow tables (sql/manifest_<table>.sql) as
    parts of at most `part_rows` rows, merged by DuckDB from the staged findings and outcomes
    (Arrow tables or datasets, scanned as they stream): memory is bounded by a part."""
    params = {"policy_id": policy.id, "policy_version": policy.version, "decided_at": decided_at}

    def parts(name: str) -> Iterator[pa.Table]:
        with connect() as con:
            con.register("findings", findings)
            con.register("outcomes", outcomes)
            con.register("clauses", _clauses(policy))
            con.register("exemptions", _exemptions(policy))
            reader = con.sql(load_sql(f"manifest_{name}"), params=params).to_arrow_reader(part_rows)
            pending: list[pa.RecordBatch] = []
            rows, yielded = 0, False
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                while rows >= part_rows:
                    table = pa.Table.from_batches(pending, schema=reader.schema)
                    yield table.slice(0, part_rows)
                    yielded = True
                    rest = table.slice(part_rows)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows or not yielded:  # an empty table is one empty part, not an extra one
                yield pa.Table.from_batches(pending, schema=reader.schema)

    return {name: parts(name) for name in ("delisted", "review", "exempted", "shadow")}


def build_tables(
    findings: pa.Table, outcomes: pa.Table, policy: Policy, decided_at: datetime
) -> dict[str, pa.Table]:
    """The same tables whole: for small runs, tests and tools."""
    return {
        name: pa.concat_tables(list(parts))
        for name, parts in stream_tables(findings, outcomes, policy, decided_at).items()
    }


def csv_bytes(table: pa.Table) -> bytes:
    """UTF-8 CSV with a header, safe to open in a spreadsheet: no cell starts a formula, and a
    byte-order mark, without which a spreadsheet reads the Chinese and Cyrillic titles in the
    locale's code page."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_cell(v) for v in row.values()])
    return out.getvalue().encode("utf-8-sig")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        text = "; ".join(_cell(v) for v in value)
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat()
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    risky = text.startswith(("\t", "\r")) or text.lstrip(_BLANKS).startswith(_FORMULA_START)
    return "'" + text if risky else text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(document: dict) -> bytes:
    return (
        json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    ).encode()


def run_folder(policy_id: str, run_id: str) -> str:
    return f"runs/{policy_id}/{run_id}"


def _complete_runs(
    fs: pafs.FileSystem, base: str, policy_id: str, excluding: str
) -> list[tuple[int, str, bytes]]:
    """The policy's complete runs (those with a digest.json), newest first: (sequence,
    folder, digest.json)."""
    runs = [
        (int(json.loads(data)["sequence"]), folder.path, data)
        for folder, data in run_digests(fs, base, policy_id, excluding)
    ]
    return sorted(runs, key=lambda run: run[0], reverse=True)


def latest_digest(
    fs: pafs.FileSystem, base: str, policy_id: str, excluding: str
) -> tuple[int, str] | None:
    """The (sequence, SHA-256 of digest.json) of the policy's latest complete run."""
    runs = _complete_runs(fs, base, policy_id, excluding)
    return (runs[0][0], _sha256(runs[0][2])) if runs else None


def latest_manifest(
    root: str, policy_id: str, kinds: tuple[str, ...] = ("purge", "re-sweep"), excluding: str = ""
) -> dict | None:
    """manifest.json of the policy's latest complete run of one of `kinds` (a reinstatement
    sweeps nothing), other than `excluding`."""
    fs, base = locate(root)
    for _, folder, _ in _complete_runs(fs, base, policy_id, excluding):
        with fs.open_input_stream(f"{folder}/manifest.json") as handle:
            manifest = dict(json.loads(handle.read()))
        if manifest.get("kind", "purge") in kinds:
            return manifest
    return None


def write_manifest(
    root: str,
    run: dict,
    tables: Mapping[str, pa.Table | Iterable[pa.Table]],
    signer: Signer,
    part_rows: int = PART_ROWS,
) -> dict:
    """Write the run's folder once: parts, manifest.json, then the signed, chained digest.
    A table given whole is split into parts of `part_rows`; one given as parts is written part
    by part as they come."""
    fs, base = locate(root)
    policy_id, run_id = run["policy"]["id"], run["run_id"]
    folder = f"{base}/{run_folder(policy_id, run_id)}"
    if fs.get_file_info(f"{folder}/manifest.json").type == pafs.FileType.File:
        raise ManifestExists(f"run {run_id} already has a manifest: a re-run writes a new run")
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(folder, recursive=True)

    s3 = aws.client("s3") if root.startswith("s3://") else None

    def put(name: str, data: bytes) -> None:
        if s3 is not None:
            # One PutObject with a checksum per file: S3 asks for a checksum on uploads to an
            # Object Lock bucket, and a multipart upload is not given the bucket's default
            # retention by every S3 implementation (moto's, for one).
            bucket, _, prefix = folder.partition("/")
            try:
                # Written once (the bucket's policy denies any other put): a file already there
                # is never replaced by a new current version.
                s3.put_object(
                    Bucket=bucket,
                    Key=f"{prefix}/{name}",
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    IfNoneMatch="*",
                )
            except s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "PreconditionFailed":
                    raise
                raise ManifestExists(
                    f"run {run_id}: {name} is already written under s3://{folder}; manifests "
                    "are written once"
                ) from None
        else:
            with fs.open_output_stream(f"{folder}/{name}") as handle:
                handle.write(data)

    parts = []
    summary = RunSummary()
    for name, source in tables.items():
        for index, part in enumerate(_parts(source, part_rows)):
            summary.add(name, part)
            for fmt, data in (("parquet", parquet_bytes(part)), ("csv", csv_bytes(part))):
                key = f"{name}-{index:05d}.{fmt}"
                put(key, data)
                parts.append(
                    {
                        "key": key,
                        "table": name,
                        "format": fmt,
                        "rows": part.num_rows,
                        "size": len(data),
                        "sha256": _sha256(data),
                    }
                )
    report = render_report(run, summary, parts)
    put("report.html", report)
    parts.append(
        {
            "key": "report.html",
            "table": "report",
            "format": "html",
            "rows": 0,
            "size": len(report),
            "sha256": _sha256(report),
        }
    )
    manifest = run | {"parts": parts, "counts": summary.counts()}
    manifest_bytes = _canonical(manifest)
    put("manifest.json", manifest_bytes)

    previous = latest_digest(fs, base, policy_id, excluding=run_id)
    digest = {
        "run_id": run_id,
        "policy_id": policy_id,
        "manifest_sha256": _sha256(manifest_bytes),
        "sequence": 1 if previous is None else previous[0] + 1,
        "previous_digest_sha256": None if previous is None else previous[1],
        "signing_key_id": signer.key_id,
        "signed_at": datetime.now(UTC).isoformat(),
    }
    digest_bytes = _canonical(digest)
    put("public-key.pem", signer.public_key_pem())
    put("digest.sig", signer.sign(digest_bytes))
    put("digest.json", digest_bytes)  # last: its presence marks the run complete
    return manifest


def _parts(source: pa.Table | Iterable[pa.Table], part_rows: int) -> Iterator[pa.Table]:
    if isinstance(source, pa.Table):
        slices = [source.slice(i, part_rows) for i in range(0, source.num_rows, part_rows)]
        yield from slices or [source]
    else:
        yield from source


def finalize_run(
    sweep_uri: str,
    *,
    runs_uri: str,
    run_id: str,
    manifests_root: str,
    signer: Signer,
    policies_dir: Path,
    kind: str = "purge",
    allow_failed: bool = True,
) -> dict:
    """The FinalizeRun step: the sweep's findings and the run's recorded outcomes merged into
    the run's manifest, signed and chained. `allow_failed=False` refuses a run with FAILED
    outcomes (they can still be retried; a manifest seals them as they are)."""
    record = read_sweep_record(sweep_uri)
    policy = load_recorded(policies_dir, record["policy"], error=PurgeError)
    store = RunStore(f"{runs_uri.rstrip('/')}/{run_id}", OUTCOME_SCHEMA)
    if not store.has_plan():
        dry = " (a dry run's records, which are never finalized)" if store.dry().has_plan() else ""
        raise PurgeError(
            f"run {run_id} has no recorded plan under {store.location}{dry}: nothing to "
            "finalize; delist the run first, or check --run-id and --runs"
        )
    findings = findings_dataset(sweep_uri)
    outcomes = store.outcomes_dataset()
    plan = store.read_plan()
    planned = findings.count_rows(filter=ds.field("decision") == "delist")
    recorded = outcomes.count_rows()
    if recorded != planned:
        raise PurgeError(
            f"run {run_id} has {recorded} outcomes for {planned} delist findings: "
            "finish (resume) the delisting before finalizing"
        )
    failed = outcomes.count_rows(filter=ds.field("outcome") == "FAILED")
    if failed and not allow_failed:
        raise OutcomesFailed(
            f"run {run_id}: {failed} of {recorded} outcomes FAILED; resume the delisting (the "
            "same run id retries them), or finalize with --allow-failed to record them as FAILED"
        )
    decided_at = datetime.fromisoformat(record["as_of"])
    tables: dict[str, Any] = dict(stream_tables(findings, outcomes, policy, decided_at))
    penalties = RunStore(f"{runs_uri.rstrip('/')}/{run_id}/penalties", PENALTY_SCHEMA)
    penalties_record = penalties.read_marker()
    if penalties_record is not None:
        tables["penalties"] = penalties.read_outcomes().sort_by("seller_id")
    # Every row the sweep set aside (no id, an id on several rows), never acted on.
    tables["quarantined"] = read_quarantine(sweep_uri)
    ended = outcomes.to_table(columns=["at"]).column("at")
    run = {
        "run_id": run_id,
        "kind": kind,
        "as_of": record["as_of"],
        "policy": {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "exemptions_sha256": record["policy"].get("exemptions_sha256"),
        },
        "snapshot": record["snapshot"],
        "sweep": record.get("scope", {"kind": "full"}),
        # Rows the policy may catch that nothing could act on (no id, or one id on several
        # rows): set aside by the sweep, counted here, never delisted.
        "quarantined": {
            "by_reason": record["summary"].get("quarantined", {}),
            "duplicate_ids": record["summary"].get("duplicate_ids", []),
        },
        "penalties": penalties_record or {"applied": False, "reason": "no penalty step ran"},
        "findings_sha256": record.get("findings_sha256"),
        "plan_sha256": plan["sha256"],
        "started_at": plan["recorded_at"],
        "ended_at": pc.max(ended).as_py().isoformat() if len(ended) else None,
        "finalized_at": datetime.now(UTC).isoformat(),
    }
    return write_manifest(manifests_root, run, tables, signer)

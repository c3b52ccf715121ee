"""Offline verification of downloaded run folders, with no AWS access and no trust in the tool
that wrote them: checksums, row counts, counts against the tables, the signature and the chain.

Each check that fails is reported as a problem naming the run and the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from catalogue_purge.errors import PurgeError
from catalogue_purge.storage import locate

SIGNED_FILES = {"manifest.json", "digest.json", "digest.sig", "public-key.pem"}
# A part is a file of the run's own folder: a plain name, never a path (../../x) out of it.
_PART_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_DIGEST_FIELDS = ("run_id", "policy_id", "sequence", "manifest_sha256", "signed_at")


class DownloadMismatch(PurgeError):
    exit_code = 8


@dataclass
class Verification:
    run_id: str
    folder: Path
    policy_id: str | None = None
    sequence: int | None = None
    digest_sha256: str | None = None
    previous_digest_sha256: str | None = None
    key_fingerprint: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_fingerprint(pem: bytes) -> str | None:
    """SHA-256 of a public key's DER SubjectPublicKeyInfo, the fingerprint an organisation
    publishes (`openssl pkey -pubin -outform DER | sha256sum`): the same however the PEM is
    wrapped. None if the bytes are not a public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _sha256(der)


def read_document(data: bytes, name: str) -> dict:
    """A JSON object of a run folder, or a PurgeError naming the file and what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PurgeError(f"{name} is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PurgeError(f"{name} is not a JSON object")
    return document


def read_digest(data: bytes, name: str = "digest.json") -> dict:
    digest = read_document(data, name)
    missing = [f for f in _DIGEST_FIELDS if f not in digest]
    if missing:
        raise PurgeError(f"{name} has no {', '.join(missing)}")
    if not isinstance(digest["sequence"], int) or digest["sequence"] < 1:
        raise PurgeError(f"{name}: sequence {digest['sequence']!r} is not a whole number >= 1")
    return digest


def unsafe_part_keys(manifest: dict) -> list[str]:
    """The parts whose key is not a plain file name of the run's folder."""
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        return ["(parts is not a list)"]
    return [
        repr(part.get("key")) if isinstance(part, dict) else repr(part)
        for part in parts
        if not (isinstance(part, dict) and isinstance(part.get("key"), str))
        or not _PART_KEY.match(part["key"])
        or part["key"] in SIGNED_FILES
    ]


def verify_run(folder: Path, pinned_key: bytes | None = None) -> Verification:
    """Verify one run folder. `pinned_key` (PEM) is the key the auditor trusts; without it the
    folder's own public-key.pem is used and its fingerprint reported for the auditor to check."""
    result = Verification(run_id=folder.name, folder=folder)
    problems = result.problems
    for name in SIGNED_FILES:
        if not (folder / name).is_file():
            problems.append(f"{folder.name}: {name} is missing")
    if problems:
        return result
    digest_bytes = (folder / "digest.json").read_bytes()
    try:
        digest = read_digest(digest_bytes, f"{folder.name}/digest.json")
    except PurgeError as exc:
        problems.append(str(exc))
        return result
    result.sequence = digest["sequence"]
    result.digest_sha256 = _sha256(digest_bytes)
    result.previous_digest_sha256 = digest.get("previous_digest_sha256")
    result.run_id = digest["run_id"]
    result.policy_id = digest["policy_id"]
    if digest["run_id"] != folder.name:
        problems.append(
            f"{folder.name}: the folder holds run {digest['run_id']} (a run moved or swapped)"
        )

    key_pem = pinned_key or (folder / "public-key.pem").read_bytes()
    result.key_fingerprint = key_fingerprint(key_pem)
    problems.extend(_verify_signature(folder, digest_bytes, key_pem, pinned_key))

    manifest_bytes = (folder / "manifest.json").read_bytes()
    if _sha256(manifest_bytes) != digest.get("manifest_sha256"):
        problems.append(f"{folder.name}: manifest.json does not match the signed digest (altered)")
    try:
        manifest = read_document(manifest_bytes, f"{folder.name}/manifest.json")
    except PurgeError as exc:
        problems.append(str(exc))
        return result
    unsafe = unsafe_part_keys(manifest)
    if unsafe:
        problems.append(
            f"{folder.name}: manifest.json names parts outside the run's folder: "
            + ", ".join(unsafe)
        )
        return result
    listed = [part["key"] for part in manifest.get("parts", [])]
    for part in manifest.get("parts", []):
        problems.extend(_verify_part(folder, part))
    extra = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.name not in SIGNED_FILES and p.name not in listed
    )
    if extra:
        problems.append(f"{folder.name}: files not in the manifest: {', '.join(extra)}")
    problems.extend(_verify_counts(folder, manifest))
    return result


def _verify_signature(
    folder: Path, digest_bytes: bytes, key_pem: bytes, pinned_key: bytes | None
) -> list[str]:
    problems = []
    if pinned_key is not None and key_fingerprint(
        (folder / "public-key.pem").read_bytes()
    ) != key_fingerprint(pinned_key):
        problems.append(f"{folder.name}: public-key.pem is not the pinned key")
    try:
        key = serialization.load_pem_public_key(key_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TypeError("not an elliptic-curve key")
        key.verify((folder / "digest.sig").read_bytes(), digest_bytes, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError) as exc:
        problems.append(
            f"{folder.name}: digest.sig does not verify digest.json ({type(exc).__name__})"
        )
    return problems


def _verify_part(folder: Path, part: dict) -> list[str]:
    path = folder / part["key"]
    if not path.is_file():
        return [f"{folder.name}: part {part['key']} is missing"]
    data = path.read_bytes()
    problems = []
    if len(data) != part["size"]:
        problems.append(
            f"{folder.name}: part {part['key']} has {len(data)} bytes, manifest says {part['size']}"
        )
    if _sha256(data) != part["sha256"]:
        problems.append(
            f"{folder.name}: part {part['key']} SHA-256 does not match the manifest (altered)"
        )
        return problems
    if part["format"] == "parquet":
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    elif part["format"] == "csv":
        rows = pacsv.read_csv(io.BytesIO(data)).num_rows
    else:
        rows = 0  # a document, not a table
    if rows != part["rows"]:
        problems.append(
            f"{folder.name}: part {part['key']} has {rows} rows, manifest says {part['rows']}"
        )
    return problems


def _verify_counts(folder: Path, manifest: dict) -> list[str]:
    """The manifest's counts against the Parquet parts themselves."""
    # The columns the counts are made of (none for review: its rows are counted).
    columns: dict[str, list[str]] = {
        "delisted": ["outcome"],
        "review": [],
        "penalties": ["status", "step_after"],
        "reinstated": ["outcome"],
        "exempted": ["listing_id"],
        "quarantined": ["reason"],
        "decisions": ["outcome", "decision", "reviewer", "second_review", "disputed"],
        "shadow": ["shadow_rule_ids", "decision", "shadow_decision"],
    }
    rows: dict[str, list[dict]] = {table: [] for table in columns}
    for part in manifest.get("parts", []):
        path = folder / part["key"]
        if part["format"] == "parquet" and path.is_file() and part["table"] in rows:
            table = pq.read_table(path, columns=columns[part["table"]])
            rows[part["table"]].extend(table.to_pylist())
    counts = manifest.get("counts", {})
    problems = []
    acted = rows["delisted"] + rows["reinstated"] + rows["decisions"]
    outcomes = dict(sorted(Counter(r["outcome"] for r in acted).items()))
    if outcomes != counts.get("by_outcome"):
        problems.append(
            f"{folder.name}: counts by outcome {counts.get('by_outcome')} do not match "
            f"the tables {outcomes}"
        )
    decisions = {"delist": len(rows["delisted"]), "review": len(rows["review"])}
    if decisions != counts.get("by_decision"):
        problems.append(
            f"{folder.name}: counts by decision {counts.get('by_decision')} do not match "
            f"the tables {decisions}"
        )
    if "exempted" in counts:
        exempted = len({r["listing_id"] for r in rows["exempted"]})
        if exempted != counts["exempted"]:
            problems.append(
                f"{folder.name}: {counts['exempted']} exempted listings counted, the table "
                f"holds {exempted}"
            )
    if "quarantined" in counts:
        problems.extend(_verify_quarantined(folder.name, manifest, rows["quarantined"]))
    if "shadow" in counts or rows["shadow"]:
        problems.extend(_verify_shadow_counts(folder.name, counts.get("shadow"), rows["shadow"]))
    if "by_review_decision" in counts or rows["decisions"]:
        problems.extend(_verify_review_counts(folder.name, counts, rows["decisions"]))
    if "by_penalty" in counts:
        penalties = dict(
            sorted(
                Counter(
                    f"{r['status']}:{r['step_after'] or 'none'}" for r in rows["penalties"]
                ).items()
            )
        )
        if penalties != counts["by_penalty"]:
            problems.append(
                f"{folder.name}: counts by penalty {counts['by_penalty']} do not match "
                f"the table {penalties}"
            )
    return problems


def _verify_quarantined(name: str, manifest: dict, rows: list[dict]) -> list[str]:
    counted = manifest["counts"]["quarantined"]
    reasons = dict(sorted(Counter(r["reason"] for r in rows).items()))
    recorded = manifest.get("quarantined", {}).get("by_reason", {})
    if reasons != counted or reasons != dict(sorted(recorded.items())):
        return [
            f"{name}: rows set aside counted {counted} and recorded {recorded} by reason, "
            f"the quarantined table holds {reasons}"
        ]
    return []


def _verify_shadow_counts(name: str, counted: dict | None, rows: list[dict]) -> list[str]:
    """The rules in shadow: the counts against the shadow table (a table the counts leave out,
    or counts with no table, fail too)."""
    tally = {
        "rows": len(rows),
        "by_rule": dict(sorted(Counter(r for row in rows for r in row["shadow_rule_ids"]).items())),
        "by_change": dict(
            sorted(
                Counter(
                    f"{r['decision']}->{r['shadow_decision']}"
                    for r in rows
                    if r["decision"] != r["shadow_decision"]
                ).items()
            )
        ),
    }
    if counted != tally:
        return [f"{name}: counts of rules in shadow {counted} do not match the table {tally}"]
    return []


def _verify_review_counts(name: str, counts: dict, rows: list[dict]) -> list[str]:
    """A review run's counts of people's decisions against its decisions table."""
    problems = []
    tallies = {
        "by_review_decision": Counter(r["decision"] for r in rows),
        "by_reviewer": Counter(r["reviewer"] for r in rows),
        "second_reviews": Counter(
            kind
            for r in rows
            for kind, on in (("agreed", r["second_review"]), ("disputed", r["disputed"]))
            if on
        ),
    }
    for key, tally in tallies.items():
        if dict(sorted(tally.items())) != counts.get(key):
            problems.append(
                f"{name}: counts {key} {counts.get(key)} do not match the decisions table "
                f"{dict(sorted(tally.items()))}"
            )
    return problems


def verify_runs(
    folders: list[Path], pinned_key: bytes | None = None, from_first: bool = True
) -> list[Verification]:
    """Verify run folders of one policy and their chain: consecutive sequences (from 1 when
    `from_first`: every run of the policy is there), each digest naming the SHA-256 of the one
    before it."""
    results = sorted(
        (verify_run(f, pinned_key) for f in folders),
        key=lambda r: (r.policy_id or "", r.sequence or 0),
    )
    chains: dict[str, list[Verification]] = {}
    for result in results:
        if result.sequence is not None:
            chains.setdefault(result.policy_id or "", []).append(result)
    for chain in chains.values():
        _verify_chain(chain, from_first)
    return results


def _verify_chain(results: list[Verification], from_first: bool) -> None:
    """One policy's runs, in sequence order: consecutive, each naming the one before."""
    previous: Verification | None = None
    expected = 1 if from_first else results[0].sequence or 1
    for result in results:
        assert result.sequence is not None  # only such runs are chained
        if previous is not None and result.sequence == previous.sequence:
            result.problems.append(
                f"{result.run_id}: sequence {result.sequence} is claimed by {previous.run_id} too"
            )
            continue
        if result.sequence != expected:
            result.problems.append(
                f"{result.run_id}: sequence {result.sequence}, expected {expected}: "
                f"run(s) {expected}..{result.sequence - 1} are missing from the chain"
            )
        elif previous is not None and result.previous_digest_sha256 != previous.digest_sha256:
            result.problems.append(
                f"{result.run_id}: previous_digest_sha256 does not match {previous.run_id}'s "
                "digest.json (an earlier run was altered or replaced)"
            )
        elif previous is None and result.sequence == 1 and result.previous_digest_sha256:
            result.problems.append(f"{result.run_id}: the first run names a previous digest")
        previous, expected = result, result.sequence + 1


def run_digests(
    fs: pafs.FileSystem, base: str, policy_id: str, excluding: str | None = None
) -> Iterator[tuple[pafs.FileInfo, bytes]]:
    """The policy's complete runs under a manifests root (those with a digest.json), but the
    run `excluding`: each run's folder and the bytes of its digest.json."""
    selector = pafs.FileSelector(f"{base}/runs/{policy_id}", allow_not_found=True)
    for run_dir in fs.get_file_info(selector):
        if run_dir.type != pafs.FileType.Directory or run_dir.base_name == excluding:
            continue
        path = f"{run_dir.path}/digest.json"
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        with fs.open_input_stream(path) as handle:
            yield run_dir, handle.read()


def list_runs(root: str, policy_id: str | None = None) -> list[dict]:
    """The complete runs (those with a digest) under a manifests root, oldest first per policy."""
    fs, base = locate(root)
    runs = []
    policies = pafs.FileSelector(f"{base}/runs", allow_not_found=True)
    for policy_dir in fs.get_file_info(policies):
        if policy_dir.type != pafs.FileType.Directory:
            continue
        if policy_id is not None and policy_dir.base_name != policy_id:
            continue
        for run_dir, data in run_digests(fs, base, policy_dir.base_name):
            location = "/".join([root.rstrip("/"), "runs", policy_dir.base_name, run_dir.base_name])
            entry = {
                "policy_id": policy_dir.base_name,
                "run_id": run_dir.base_name,
                "sequence": None,
                "signed_at": None,
                "location": location,
                "problem": None,
            }
            try:
                digest = read_digest(data, f"{location}/digest.json")
            except PurgeError as exc:
                entry["problem"] = f"{exc}: download and `audit verify` it"
            else:
                entry |= {k: digest[k] for k in ("run_id", "sequence", "signed_at")}
                if digest["run_id"] != run_dir.base_name:
                    entry["problem"] = (
                        f"the folder {run_dir.base_name} holds run {digest['run_id']}"
                    )
            runs.append(entry)
    return sorted(runs, key=lambda r: (r["policy_id"], r["sequence"] or 0, r["run_id"]))


def download_run(location: str, to: Path) -> Path:
    """Copy a run folder, checking every part against the manifest as it arrives: a mismatch
    stops the download with the name of the part."""
    fs, path = locate(location)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    folder = to / name
    to.mkdir(parents=True, exist_ok=True)
    # Into a temporary folder beside the target, moved into place once every part checked:
    # a download that fails leaves nothing that looks like a run folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=to))
    try:

        def fetch(file: str) -> bytes:
            with fs.open_input_stream(f"{path}/{file}") as handle:
                data = bytes(handle.read())
            (staging / file).write_bytes(data)
            return data

        for file in sorted(SIGNED_FILES):
            fetch(file)
        manifest = read_document(
            (staging / "manifest.json").read_bytes(), f"{location}/manifest.json"
        )
        unsafe = unsafe_part_keys(manifest)
        if unsafe:
            raise DownloadMismatch(
                f"{location}/manifest.json names parts outside the run's folder: "
                + ", ".join(unsafe)
                + "; nothing was downloaded"
            )
        for part in manifest["parts"]:
            data = fetch(part["key"])
            if _sha256(data) != part["sha256"] or len(data) != part["size"]:
                raise DownloadMismatch(
                    f"{location}/{part['key']}: the downloaded bytes do not match the manifest "
                    f"(SHA-256 {_sha256(data)[:16]}, expected {part['sha256'][:16]}); "
                    "nothing was kept"
                )
        if folder.exists():
            shutil.rmtree(folder)  # an earlier download of the same run, replaced whole
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


LINK_SECONDS = 900  # download links expire within 15 minutes


def presigned_links(s3: Any, bucket: str, run: dict, seconds: int = LINK_SECONDS) -> list[dict]:
    """Download links for every file of a run folder, valid for `seconds` at most."""
    prefix = run["location"].removeprefix(f"s3://{bucket}/").rstrip("/")
    manifest = read_document(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read(),
        f"{run['location']}/manifest.json",
    )
    if unsafe_part_keys(manifest):
        raise PurgeError(f"{run['location']}/manifest.json names parts outside the run's folder")
    names = sorted(SIGNED_FILES) + [part["key"] for part in manifest["parts"]]
    return [
        {
            "name": name,
            "url": s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": f"{prefix}/{name}"},
                ExpiresIn=min(seconds, LINK_SECONDS),
            ),
        }
        for name in names
    ]

"""The auditors' commands on folders and roots an attacker or an accident has spoiled: never a
traceback, never a pass, nothing written outside the target."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest

from catalogue_purge.cli import main
from catalogue_purge.job.stack import create_manifests_bucket
from catalogue_purge.record.audit import download_run, list_runs

from .test_manifest import make_tables, problems, signer, write_run

__all__ = ["signer"]  # the fixture, used by name


@pytest.fixture
def chain(policy, tmp_path, signer):
    """Three runs of one policy, written and signed, under tmp_path/m."""
    tables, run = make_tables(policy, tmp_path)
    folders = [write_run(tmp_path / "m", f"run-{i}", tables, run, signer) for i in (1, 2, 3)]
    return tmp_path / "m", folders, tables, run


@pytest.mark.parametrize(
    ("file", "content", "said"),
    [
        ("digest.json", b"{not json", "digest.json is not JSON"),
        ("digest.json", b"[1, 2]", "digest.json is not a JSON object"),
        ("manifest.json", b"\xff\xfe", "manifest.json does not match the signed digest"),
    ],
)
def test_documents_that_are_not_json_fail_verification_by_name(chain, capsys, file, content, said):
    root, folders, _, _ = chain
    (folders[2] / file).write_bytes(content)
    assert any(said in p for p in problems(folders))
    assert main(["audit", "verify", str(folders[2].parent)]) == 8
    assert said in capsys.readouterr().out
    assert main(["audit", "list", "--root", str(root)]) == (8 if file == "digest.json" else 0)
    listed = capsys.readouterr().out
    assert "run-1" in listed and "run-2" in listed


def test_a_digest_without_signed_at_is_named(chain, capsys):
    root, folders, _, _ = chain
    digest = json.loads((folders[1] / "digest.json").read_text())
    del digest["signed_at"]
    (folders[1] / "digest.json").write_text(json.dumps(digest))
    assert any("digest.json has no signed_at" in p for p in problems(folders))
    (broken,) = [r for r in list_runs(str(root)) if r["problem"]]
    assert broken["run_id"] == "run-2" and "has no signed_at" in broken["problem"]


def test_a_swapped_folder_is_caught(chain):
    _, folders, _, _ = chain
    base = folders[0].parent
    shutil.move(folders[0], base / "tmp")
    shutil.move(folders[1], folders[0])
    shutil.move(base / "tmp", folders[1])
    found = problems(folders)
    assert any("run-1: the folder holds run run-2" in p for p in found)
    assert any("run-2: the folder holds run run-1" in p for p in found)


def test_two_policies_chains_are_checked_apart(chain, policy, tmp_path, signer):
    _, folders, tables, run = chain
    other = run | {"policy": run["policy"] | {"id": "another-policy"}}
    theirs = [write_run(tmp_path / "m", f"other-{i}", tables, other, signer) for i in (1, 2)]
    both = folders + theirs
    assert problems(both) == []
    assert not any("are missing" in p for p in problems(both))
    shutil.rmtree(folders[1])
    assert any("run(s) 2..2 are missing" in p for p in problems([folders[0], folders[2], *theirs]))


def test_a_part_key_outside_the_run_folder_is_refused(chain, tmp_path, capsys):
    _, folders, _, _ = chain
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    manifest["parts"][0]["key"] = "../../x"
    (folders[0] / "manifest.json").write_text(json.dumps(manifest))
    assert any("names parts outside the run's folder: '../../x'" in p for p in problems(folders))
    with pytest.raises(Exception, match="outside the run's folder"):
        download_run(str(folders[0]), tmp_path / "to")
    assert not (tmp_path / "x").exists()
    assert [p.name for p in (tmp_path / "to").iterdir()] == []


def test_a_tampered_part_leaves_no_partial_download(chain, tmp_path, capsys, signer):
    _, folders, _, _ = chain
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(signer.public_key_pem())
    part = folders[1] / "delisted-00000.parquet"
    part.write_bytes(part.read_bytes()[:-1] + b"\x00")
    target = tmp_path / "downloads"
    assert (
        main(["audit", "download", "run-2", "--root", str(tmp_path / "m"), "--to", str(target)])
        == 8
    )
    assert "delisted-00000.parquet: the downloaded bytes do not match" in capsys.readouterr().err
    assert list(target.iterdir()) == []  # neither a partial folder nor the staging one
    assert (
        main(
            [
                "audit",
                "download",
                "run-1",
                "--root",
                str(tmp_path / "m"),
                "--to",
                str(target),
                "--key",
                str(trusted),
            ]
        )
        == 0
    )
    assert [p.name for p in target.iterdir()] == ["run-1"]


def test_an_empty_or_wrong_root_is_said(tmp_path, capsys, aws):
    assert main(["audit", "list", "--root", str(tmp_path / "nothing-here")]) == 1
    assert "no complete run under" in capsys.readouterr().err
    s3 = boto3.client("s3")
    key = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    create_manifests_bucket(s3, "empty-manifests", key, retention_days=1, tls_only=False)
    assert main(["audit", "list", "--root", "s3://empty-manifests", "--json"]) == 1
    said = capsys.readouterr()
    assert json.loads(said.out) == [] and "check --root or --stack" in said.err


def test_a_folder_re_signed_by_a_stranger_fails_and_only_the_true_one_passes(
    chain, tmp_path, signer, capsys
):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _, folders, _, _ = chain
    true_copy = tmp_path / "true"
    shutil.copytree(folders[0].parent, true_copy)
    # A stranger edits a count, re-digests, signs with a key of their own, and ships that key.
    stranger = ec.generate_private_key(ec.SECP256R1())
    target = folders[2]
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["counts"]["by_decision"]["review"] += 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    digest = json.loads((target / "digest.json").read_text())
    import hashlib

    digest["manifest_sha256"] = hashlib.sha256((target / "manifest.json").read_bytes()).hexdigest()
    (target / "digest.json").write_text(json.dumps(digest))
    (target / "digest.sig").write_bytes(
        stranger.sign((target / "digest.json").read_bytes(), ec.ECDSA(hashes.SHA256()))
    )
    (target / "public-key.pem").write_bytes(
        stranger.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    chain_folder = str(folders[0].parent)
    assert main(["audit", "verify", chain_folder]) == 8  # no flag: never a pass
    assert "NOT verified: the signing key is not pinned" in capsys.readouterr().out
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(signer.public_key_pem())
    assert main(["audit", "verify", chain_folder, "--key", str(trusted)]) == 8
    said = capsys.readouterr().out
    assert "run-3: public-key.pem is not the pinned key" in said
    assert "run-3: digest.sig does not verify digest.json" in said
    assert main(["audit", "verify", str(true_copy), "--key", str(trusted)]) == 0
    capsys.readouterr()
    # Pinned by the published fingerprint: the stranger's key is not the one it names.
    from catalogue_purge.record.audit import key_fingerprint

    published = key_fingerprint(signer.public_key_pem())
    assert main(["audit", "verify", str(true_copy), "--key-sha256", f"SHA256:{published}"]) == 0
    assert main(["audit", "verify", str(target), "--key-sha256", published]) == 8
    assert f"no run folder holds the key with SHA-256 {published}" in capsys.readouterr().out
    # A PEM wrapped otherwise (CRLF line ends) is the same key.
    crlf = tmp_path / "crlf.pem"
    crlf.write_bytes(signer.public_key_pem().replace(b"\n", b"\r\n"))
    assert main(["audit", "verify", str(true_copy), "--key", str(crlf)]) == 0
    with pytest.raises(SystemExit):  # one way of pinning at a time
        main(["audit", "verify", str(true_copy), "--key", str(crlf), "--key-sha256", published])


def test_the_chains_head_catches_a_removed_newest_run(chain, tmp_path, signer, capsys):
    _, folders, _, _ = chain
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(signer.public_key_pem())
    shutil.rmtree(folders[2])  # the newest run deleted: the rest is a valid chain
    verify = ["audit", "verify", str(folders[0].parent), "--key", str(trusted)]
    assert main(verify) == 0
    capsys.readouterr()
    assert main([*verify, "--expect-head", "3"]) == 8
    assert "the chain ends at run run-2 (sequence 2), but its head is 3" in capsys.readouterr().out
    assert main([*verify, "--expect-head", "run-3"]) == 8
    assert main([*verify, "--expect-head", "run-2"]) == 0
    assert main([*verify, "--expect-head", "2"]) == 0

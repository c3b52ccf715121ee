"""The record: what auditors get (the signed, chained manifest of a run, its report, and the
offline audit that lists, downloads and verifies manifests).

Imports enforce/, detect/ and the shared pieces; never review/ or job/."""

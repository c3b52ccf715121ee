"""Detection: what a listing is and whether the policy catches it (the policy, normalisation,
the matcher, snapshots, the sweep, and the enforcement history that recognises relists).

Imports only the shared pieces at the top of the package (errors, engine, storage, aws)."""

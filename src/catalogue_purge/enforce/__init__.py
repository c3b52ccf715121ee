"""Enforcement: what is done about a finding in the live systems (the live catalogue, the
delisting plan and its outcomes, the run's records, the seller ledger's penalties, notices).

Imports detect/ and the shared pieces; never record/, review/ or job/."""

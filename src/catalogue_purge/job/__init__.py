"""The serverless job that runs the stages: the run's steps as the Lambda functions call them,
their event contracts, the state machine and its local interpreter, the stack read from
template.yaml, the local runner over moto's server, and reinstatement on appeal.

Imports every stage below it (record/, enforce/, detect/) and the shared pieces; only cli and
functions/ import it."""

"""catalogue-purge: enforce a product ban across a marketplace catalogue.

One sub-package per stage, each importing only the stages below it:
detect/ -> enforce/ -> record/ -> job/, with cli (and the demo's synthetic data) at the door
and a few shared pieces (errors, aws, engine, storage) beneath them all."""

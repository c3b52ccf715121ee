"""Review: people decide the listings a run sent to review (the queue, claims and decisions),
and their decisions are applied and recorded like the automated ones (a run of kind review
with its own signed manifest), exported for spreadsheets and served on a page on loopback.

Imports record/, enforce/, detect/ and the shared pieces; never job/."""

"""Training one model: batches (``batches``), the loop with its hooks (``loop``), scores
(``metrics``). Import the modules directly; this package's ``__init__`` stays empty so that
no import goes through it."""

"""The search, one module per job, in the order a search uses them:

- ``records``: SearchOptions, Settings, TrialRecord, SearchResult (a leaf anyone may import);
- ``settings``: options -> settings, the Optuna sampler and Tune scheduler by name;
- ``handbuilt``: the hand-built default model and the first trials of a new search;
- ``context``: the state one search's steps share;
- ``driver``: ``run_search``, from the checks to the summary;
- ``tuner``, ``trainable``, ``searcher``, ``callback``, ``progress``: the Ray Tune part;
- ``resume``, ``runs``: state on disk, trials read back from MLflow;
- ``selection``, ``ensemble``, ``evaluate``, ``table``: the best trial, the greedy ensemble of
  the trials, their test evaluation, the trial table.

Importing this package imports none of them, so ``autofusion.search.records`` stays cheap.
"""

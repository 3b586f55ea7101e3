"""``radmesh batch``: one question over a cohort of studies, each study a Ray task.

- :mod:`radmesh.batch.manifest` reads and checks the studies CSV;
- :mod:`radmesh.batch.study` answers one study (the code path of ``radmesh ask``, in-process
  or against a running assistant) and returns its files;
- :mod:`radmesh.batch.outputs` owns the output folder: which studies are done, writing a
  study's folder atomically;
- :mod:`radmesh.batch.cohort` builds the cohort tables (CSV and Parquet) and the summary;
- :mod:`radmesh.batch.run` is the Ray driver (submit, retry, progress, resume);
- :mod:`radmesh.batch.command` is the CLI subcommand.

See docs/batch.md.
"""

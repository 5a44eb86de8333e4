"""`python -m jobs.backfill --run DIR --out DIR ARCHIVE...`: `fusionlog detect` as a Ray job: score new archives
of a finished run's target (a later month) with its templates, tau and model; no retraining."""

import sys

from fusionlog.cli import app

if __name__ == "__main__":
    app(["detect", *sys.argv[1:]])

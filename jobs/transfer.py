"""`python -m jobs.transfer conf/experiments/<name>.yaml --run DIR [--from STAGE]`: `fusionlog run` as a Ray job
(`ray job submit --working-dir . -- python -m jobs.transfer ...`); Ray stages join the job's cluster."""

import sys

from fusionlog.cli import app

if __name__ == "__main__":
    app(["run", *sys.argv[1:]])

"""`python -m jobs.ingest --system HDFS --out RUN INPUT...`: the ingest stage as a submitted job."""

from fusionlog.cli import app

if __name__ == "__main__":
    app(["ingest", *__import__("sys").argv[1:]])

"""A command run as a submitted Ray job (``ray job submit``, jobs/submit.sh): its files must outlive the job.

A job's driver runs in Ray's copy of ``--working-dir``, inside the Ray session folder of the node it landed on
(``…/session_…/runtime_resources/working_dir_files/_ray_pkg_…``), which Ray deletes with the session. A relative
folder there is written where nobody looks, and then lost; so a job refuses one before it starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from raymeta.config.schema import uri_scheme
from raymeta.errors import ConfigError

JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray's job supervisor in the environment of every submitted job's driver (the job's runtime environment
and metadata as JSON; ``ray/dashboard/modules/job/job_supervisor.py``, Ray 2.60). Plain ``python`` or ``raymeta``
on a node, even one joining a cluster, does not have it."""


def submitted_job() -> str | None:
    """The submission id of the Ray job this process is the driver of; None outside a submitted job."""
    text = os.environ.get(JOB_ENV)
    if not text:
        return None
    try:
        metadata = json.loads(text).get("metadata") or {}
    except (ValueError, AttributeError):
        metadata = {}
    return str(metadata.get("job_submission_id") or "(id unknown)")


def require_kept_output(folders: dict[str, str | None]) -> None:
    """In a submitted Ray job, refuse every relative folder of ``folders`` (setting → value), naming where its
    files would have gone and how to choose storage. Absolute paths and object-storage URIs pass."""
    job = submitted_job()
    if job is None:
        return
    relative = {
        key: value
        for key, value in folders.items()
        if value and uri_scheme(value) is None and not Path(value).is_absolute()
    }
    if not relative:
        return
    named = "; ".join(f"{key}={value!r} would be written to {Path.cwd() / value}" for key, value in relative.items())
    raise ConfigError(
        f"this command runs as the Ray job {job}, and {named}: inside Ray's copy of the job's working directory on "
        "the node the job runs on, which Ray deletes with its session. Choose storage that every node sees and that "
        "outlives the job: an absolute path on shared storage (--run-dir /shared/runs/NAME, NFS) or a URI on object "
        "storage (--run-dir s3://BUCKET/runs/NAME, gs://…, abfs://…)"
    )

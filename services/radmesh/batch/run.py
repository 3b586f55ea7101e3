"""The Ray driver of ``radmesh batch``: every study not yet done is one Ray task.

:func:`run_batch` skips the studies whose folder is complete (a rerun of a finished cohort
submits nothing and starts no Ray), submits the others at most ``window`` at a time,
writes each study's folder as soon as its task returns, and at the end — also after a
failure or Ctrl-C — rewrites the cohort tables from every done study and ``summary.json``
for this run.

Retries, by kind of failure:

- the worker process or its node dies (killed, OOM-killed, preempted): Ray runs the task
  again, up to ``max_retries`` times (``max_retries`` of the task; the study is pure, so a
  second run is safe);
- the mesh is unavailable or a deadline passes: the study retries the call itself
  (:data:`radmesh.batch.study.TRANSIENT`);
- the study itself is wrong (a corrupt file, a refusal): no retry; it fails alone, with the
  reason in summary.json and on the console.

Ray: a local cluster started for the run (``num_workers × cpus_per_study`` CPUs, default all)
unless ``ray_address`` (or RAY_ADDRESS) names one (``auto``, ``HOST:6379`` or
``ray://HOST:10001``); when Ray is already initialised in this process (tests, notebooks)
that cluster is used and left up.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radmesh.batch import cohort, outputs
from radmesh.batch.manifest import StudyRow
from radmesh.batch.study import DONE, FAILED, NOT_RUN, Outcome, Settings, answer_study
from radmesh.common.errors import InvalidInputError

DEFAULT_MAX_RETRIES = 3
DEFAULT_CPUS_PER_STUDY = 1.0
# Tests only: "STUDY_ID:MARKER_FILE" makes the worker answering STUDY_ID kill itself (SIGKILL,
# as the OOM killer would) the first time, i.e. while MARKER_FILE does not exist yet.
KILL_ONCE_ENV = "RADMESH_BATCH_TEST_KILL_ONCE"


@dataclass
class BatchResult:
    out: Path
    total: int
    already_done: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # in this run
    failed: dict[str, str] = field(default_factory=dict)  # study id → reason
    not_run: list[str] = field(default_factory=list)
    submitted: int = 0
    tables: list[Path] = field(default_factory=list)
    summary_path: Path | None = None


def _study_task(row: StudyRow, settings: Settings) -> Outcome:
    """What a Ray worker runs for one study."""
    spec = os.environ.get(KILL_ONCE_ENV, "")
    if spec:
        study_id, _, marker = spec.partition(":")
        if study_id == row.study_id and marker and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return answer_study(row, settings)


def _result_json(row: StudyRow, settings: Settings, o: Outcome) -> dict[str, Any]:
    """result.json: what was asked of which file, and the findings the cohort tables are built from."""
    a = o.answer
    return {
        "study_id": row.study_id, "path": row.path, "prompt": row.prompt, "fast": settings.fast,
        "status": DONE, "text": a.get("text", ""), "targets": a.get("targets") or [],
        "segmented": a.get("segmented") or [], "findings": a.get("findings"), "model": a.get("model") or {},
        "files": sorted(o.files), "elapsed_s": o.elapsed_s, "attempts": o.attempts, "host": o.host,
        "assistant": settings.assistant_url or "in-process",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _check_same_question(rows: Sequence[StudyRow], done: dict[str, dict[str, Any]], settings: Settings,
                         out: Path) -> None:
    """A rerun continues the same question; mixing two questions' answers in one table is refused."""
    for row in rows:
        r = done.get(row.study_id)
        if r is None:
            continue
        if r.get("prompt") != row.prompt or bool(r.get("fast")) != settings.fast:
            raise InvalidInputError(
                f"{outputs.study_dir(out, row.study_id)} answers {r.get('prompt')!r}"
                f"{' (--fast)' if r.get('fast') else ''}, not {row.prompt!r}{' (--fast)' if settings.fast else ''}; "
                f"use another --out, or remove that study's folder to answer it again")


def _crash_reason(e: BaseException, max_retries: int) -> tuple[str, str]:
    """(status, reason) of a task Ray could not finish."""
    import ray.exceptions as rex

    if isinstance(e, rex.TaskCancelledError):
        return NOT_RUN, "cancelled"
    if isinstance(e, rex.OutOfMemoryError):
        return FAILED, "its worker ran out of memory (Ray's memory monitor killed it); give it more memory"
    if isinstance(e, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError)):
        return FAILED, f"its worker died {max_retries + 1} times ({type(e).__name__})"
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return FAILED, f"Ray could not run it: {first}"


def ray_target(ray_address: str | None) -> str:
    """The cluster to use: --ray-address, else RAY_ADDRESS (set by ``ray job submit`` and a KubeRay
    RayJob for their entrypoint), else "local": a new local cluster even where ``ray start``
    left one running (plain ``ray.init()`` would join that one)."""
    return ray_address or os.environ.get("RAY_ADDRESS") or "local"


def _init_ray(ray: Any, address: str, num_cpus: int) -> bool:
    """Start or join a Ray cluster; False when this process already had one (left up afterwards)."""
    if ray.is_initialized():
        return False
    # Ray's own warnings (token authentication, /dev/shm size, ...) are for operators of the
    # cluster, not for the question being asked; errors still show
    kwargs: dict[str, Any] = dict(address=address, include_dashboard=False, log_to_driver=False,
                                  logging_level=logging.ERROR, configure_logging=True)
    if address == "local":
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        from radmesh.common.errors import UnavailableError

        raise UnavailableError(f"no Ray cluster at {address}: {e}") from None
    return True


def run_batch(rows: Sequence[StudyRow], out: str | os.PathLike, settings: Settings, *,
              ray_address: str | None = None, num_workers: int | None = None,
              cpus_per_study: float = DEFAULT_CPUS_PER_STUDY, max_retries: int = DEFAULT_MAX_RETRIES,
              progress: bool = True, echo: Callable[[str], None] | None = None) -> BatchResult:
    """Answer every study of ``rows`` not done yet in ``out``; see the module docstring."""
    if cpus_per_study <= 0:
        raise InvalidInputError(f"--cpus-per-study must be > 0, got {cpus_per_study:g}")
    if num_workers is not None and num_workers < 1:
        raise InvalidInputError(f"--num-workers must be at least 1, got {num_workers}")
    if max_retries < 0:
        raise InvalidInputError(f"--max-retries must be 0 or more, got {max_retries}")
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    with outputs.locked(out) as root:
        outputs.remove_partials(root)
        done = outputs.done_results(root, [r.study_id for r in rows])
        _check_same_question(rows, done, settings, root)
        result = BatchResult(root, len(rows), already_done=[r.study_id for r in rows if r.study_id in done])
        todo = [r for r in rows if r.study_id not in done]
        if result.already_done:
            echo(f"{len(result.already_done)} of {len(rows)} studies already done in {root}"
                 + ("; nothing to run" if not todo else ""))
        try:
            if todo:
                _run_tasks(todo, root, settings, result, ray_address, num_workers, cpus_per_study, max_retries,
                           progress, echo)
        finally:
            _finish(rows, root, settings, result)
    return result


def _run_tasks(todo: Sequence[StudyRow], root: Path, settings: Settings, result: BatchResult,
               ray_address: str | None, num_workers: int | None, cpus_per_study: float, max_retries: int,
               progress: bool, echo: Callable[[str], None]) -> None:
    import ray
    from tqdm import tqdm

    local_cpus = max(1, round(num_workers * cpus_per_study)) if num_workers else os.cpu_count() or 1
    started = _init_ray(ray, ray_target(ray_address), local_cpus)
    by_id = {r.study_id: r for r in todo}
    pending: dict[Any, str] = {}
    previous_sigterm = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a pod being deleted, `kill`) ends the run like Ctrl-C: tasks cancelled, summary
        # written; installed after ray.init, whose own handler only prints a stack dump and exits
        previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        workers = num_workers or max(1, int(cluster_cpus // cpus_per_study))
        # a bounded window: the driver holds few results at once, and --num-workers caps a shared cluster
        window = workers if num_workers else 2 * workers
        target = ray_target(ray_address)
        where = (f"the Ray cluster of this process ({cluster_cpus:g} CPUs)" if not started else
                 f"a local Ray cluster of {cluster_cpus:g} CPUs" if target == "local" else
                 f"the Ray cluster at {target} ({cluster_cpus:g} CPUs)")
        echo(f"{len(todo)} studies on {where}, {min(workers, len(todo))} at a time "
             f"({'in-process' if not settings.assistant_url else 'calling ' + settings.assistant_url})")
        remote = ray.remote(_study_task)
        queue = list(todo)
        with tqdm(total=len(todo), unit="study", desc="batch", disable=not progress, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            while queue or pending:
                while queue and len(pending) < window:
                    row = queue.pop(0)
                    task = remote.options(num_cpus=cpus_per_study, max_retries=max_retries, retry_exceptions=False,
                                          name=f"study {row.study_id}")
                    pending[task.remote(row, settings)] = row.study_id
                    result.submitted += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    study_id = pending.pop(ref)
                    _record(ray, ref, by_id[study_id], root, settings, result, max_retries,
                            lambda line: bar.write(line, file=sys.stderr))
                    bar.update(1)
                    bar.set_postfix(failed=len(result.failed), refresh=False)
    except BaseException:
        # Ctrl-C, or a folder that could not be written: the studies written so far stay done,
        # the rest run on the next invocation; the tasks in flight stop (on a shared cluster
        # they would otherwise go on for nobody)
        for ref, study_id in pending.items():
            ray.cancel(ref, force=True)
            result.not_run.append(study_id)
        pending.clear()
        raise
    finally:
        result.not_run.extend(r.study_id for r in todo if r.study_id not in result.done
                              and r.study_id not in result.failed and r.study_id not in result.not_run)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if started:
            ray.shutdown()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _record(ray: Any, ref: Any, row: StudyRow, root: Path, settings: Settings, result: BatchResult,
            max_retries: int, say: Callable[[str], None]) -> None:
    try:
        outcome: Outcome = ray.get(ref)
    except ray.exceptions.RayError as e:
        status, reason = _crash_reason(e, max_retries)
        outcome = Outcome(row.study_id, status, reason)
    if outcome.status == DONE:
        outputs.write_study(root, row.study_id, outcome.files, _result_json(row, settings, outcome))
        result.done.append(row.study_id)
    elif outcome.status == NOT_RUN:
        result.not_run.append(row.study_id)
    else:
        result.failed[row.study_id] = outcome.reason
        say(f"radmesh: study {row.study_id} failed: {outcome.reason}")


def _finish(rows: Sequence[StudyRow], root: Path, settings: Settings, result: BatchResult) -> None:
    """The tables from every done study of the manifest, and summary.json of this run."""
    done = outputs.done_results(root, [r.study_id for r in rows])
    result.tables = cohort.write_tables(root, [(r.study_id, done[r.study_id]) for r in rows if r.study_id in done])
    studies = []
    for r in rows:
        entry: dict[str, Any] = {"study_id": r.study_id, "path": r.path}
        if r.study_id in done:
            d = done[r.study_id]
            entry.update(status=DONE, already_done=r.study_id in result.already_done, elapsed_s=d.get("elapsed_s"),
                         folder=str(outputs.study_dir(root, r.study_id).relative_to(root)))
        elif r.study_id in result.failed:
            entry.update(status=FAILED, reason=result.failed[r.study_id])
        else:
            entry.update(status=NOT_RUN)
        studies.append(entry)
    summary = {
        "out": str(root), "assistant": settings.assistant_url or "in-process", "fast": settings.fast,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {"studies": len(rows), "done": len(done), "done_now": len(result.done),
                   "already_done": len(result.already_done), "failed": len(result.failed),
                   "not_run": sum(1 for s in studies if s["status"] == NOT_RUN)},
        "tables": [p.name for p in result.tables],
        "studies": studies,
    }
    result.summary_path = root / "summary.json"
    outputs.write_if_changed(result.summary_path, cohort.summary_bytes(summary))

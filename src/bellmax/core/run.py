"""The run directory: config.json, metrics (CSV + JSONL + TensorBoard), checkpoints, progress bar.

One run directory is the single source of truth for a run. Every file that must survive a crash
is written atomically (temporary file in the same directory, fsync, rename), so a kill at any
moment leaves the last good checkpoint and config intact.

    runs/ppo-CartPole-v1-s0-20261125-120000/
      config.json       {"algo": ..., "config": {...}, "preset": ..., "bellmax_version": ...}
      metrics.jsonl     one JSON object per logged iteration (the complete record)
      metrics.csv       the same rows as CSV, one column per key
      tb/               TensorBoard events
      checkpoint.pt     the latest checkpoint (everything needed to resume bit-for-bit)
      checkpoint-STEP.pt  the last `keep_checkpoints` checkpoints by step (checkpoint.pt is a second
                        name of the newest), which --resume falls back to when a newer one is damaged
      .lock             held by the process writing the run, so no second one writes it at once

A run directory that is also a Hugging Face model directory (an RLHF stage's), where config.json is
the model's, keeps the run's config in run_config.json instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from bellmax.errors import BellmaxError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

CONFIG_FILE = "config.json"
MODEL_RUN_CONFIG_FILE = "run_config.json"  # the run's config where config.json is a Hugging Face model's
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
LOCK_FILE = ".lock"


def _file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write(f)` on a temporary file next to `path`, then put it in place so that readers see
    either the old file or the new one, never half: a crash or kill mid-write leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would hide the run from other users (a shared TensorBoard)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class StopRequests:
    """While open, the first Ctrl-C (SIGINT) or SIGTERM only asks the training loop to stop: it
    finishes the iteration it is in, writes a checkpoint and raises `TrainingInterrupted`, so the
    run resumes bit-for-bit from where it stopped instead of from the last periodic checkpoint.
    A second signal stops at once (KeyboardInterrupt), as without it.

    `requested` holds the signal's name once one came. Handlers can only be set in the main thread;
    elsewhere (a Ray worker's thread, a test runner's) signals keep their usual meaning."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, notify: Callable[[str], None]) -> None:
        self.requested: str | None = None
        self._notify = notify  # the run's: above its progress bar, or to stderr
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        self._notify(f"{self.requested}: finishing this iteration and saving a checkpoint "
                     "(send it again to stop at once)")


# A checkpoint is torch.save's zip archive followed by a footer line that names the file format and
# the SHA-256 of every byte before it; torch.load reads the archive and ignores what follows it.
# Format 1 (no footer) is what bellmax wrote before checkpoints verified themselves.
CHECKPOINT_FORMAT = 2
_FOOTER_PREFIX = b"\nbellmax-checkpoint format="
_FOOTER_LENGTH = len(_FOOTER_PREFIX) + 4 + len(b" sha256=") + 64 + 1


def _footer(digest: str) -> bytes:
    footer = _FOOTER_PREFIX + f"{CHECKPOINT_FORMAT:04d} sha256={digest}\n".encode()
    assert len(footer) == _FOOTER_LENGTH
    return footer


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically, with the footer that lets every reader verify it."""
    import torch

    # streamed into the file: tensors (a replay buffer's arrays among them, `SavedAsTensors`) are
    # written from memory as they are, never copied into one big bytes object first, and hashed as
    # they pass
    failed: list[OSError] = []

    def write(f: BinaryIO) -> None:
        hashing = _HashingWriter(f, failed)
        try:
            torch.save(state, cast(BinaryIO, hashing))
        except RuntimeError:  # torch reports a failed write as "enforce fail ... unexpected pos": say why
            if failed:
                raise failed[0] from None
            raise
        f.write(_footer(hashing.sha256.hexdigest()))

    try:
        atomic_write(path, write)
    except OSError as exc:  # a full disk or quota: a DQN Atari checkpoint needs 7 GB free next to the old one
        reason = exc.strerror or str(exc)
        raise BellmaxError(f"could not write checkpoint {path} ({reason}); the previous checkpoint there is "
                           "intact: free space (a checkpoint is written next to the old one before replacing "
                           "it), then continue with --resume") from None


class _HashingWriter:
    """A file that hashes what is written through it and notes the OSError of a failed write
    (torch.save turns it into an opaque RuntimeError)."""

    def __init__(self, f: BinaryIO, failed: list[OSError]):
        import hashlib

        self.f, self.failed, self.sha256 = f, failed, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        try:
            return self.f.write(data)
        except OSError as exc:
            self.failed.append(exc)
            raise

    def flush(self) -> None:
        self.f.flush()


# Classes that moved since older checkpoints pickled them: (module, name) then -> module now
MOVED_CLASSES = {
    **{("bellmax.core.buffers", name): "bellmax.core.rollout" for name in ("EpisodeTracker", "RolloutBuffer")},
    **{("bellmax.core.buffers", name): "bellmax.core.replay"
       for name in ("ReplayBuffer", "NStepAccumulator", "FrameStackReplayBuffer", "PrioritizedFrameStackReplayBuffer",
                    "PrioritizedReplayBuffer", "SumTree")},
}


class _CheckpointUnpickler(pickle.Unpickler):
    """pickle's Unpickler that finds moved classes (`MOVED_CLASSES`) where they live now."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_CLASSES.get((module, name), module), name)


# what torch.load takes as its pickle module: pickle, with the unpickler above
_checkpoint_pickle = types.SimpleNamespace(__name__="pickle", Unpickler=_CheckpointUnpickler, load=pickle.load)


def verify_checkpoint(path: Path) -> int:
    """Check `path` against the checksum written with it; returns its format (1: written before
    checkpoints carried checksums, which cannot be verified). Raises BellmaxError naming the file
    and what failed."""
    import hashlib

    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(size - _FOOTER_LENGTH, 0))
            footer = f.read()
            f.seek(0)
            magic = f.read(2)
            if not footer.startswith(_FOOTER_PREFIX) or len(footer) != _FOOTER_LENGTH:
                f.seek(max(size - (1 << 16), 0))
                if magic == b"PK" and _FOOTER_PREFIX not in f.read():  # an older bellmax's checkpoint
                    return 1
                raise BellmaxError(f"checkpoint {path} is damaged or not a checkpoint (it ends without the "
                                   "checksum line bellmax writes); restore it from a copy or retrain")
            try:
                fmt = int(footer[len(_FOOTER_PREFIX):len(_FOOTER_PREFIX) + 4])
                expected = footer[-65:-1].decode("ascii")
            except (ValueError, UnicodeDecodeError):
                raise BellmaxError(f"checkpoint {path} is damaged (its checksum line is unreadable); restore it "
                                   "from a copy or retrain") from None
            if fmt > CHECKPOINT_FORMAT:
                raise BellmaxError(f"checkpoint {path} has format {fmt}, written by a newer bellmax than this one "
                                   f"(which reads formats up to {CHECKPOINT_FORMAT}): upgrade bellmax")
            digest = hashlib.sha256()
            f.seek(0)
            remaining = size - _FOOTER_LENGTH
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 22))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
    except OSError as exc:
        raise BellmaxError(f"could not read checkpoint {path} ({exc.strerror or exc})") from None
    if digest.hexdigest() != expected:
        raise BellmaxError(f"checkpoint {path} is damaged: its content does not match the SHA-256 written with "
                           "it (a changed or cut byte); restore it from a copy or retrain")
    return fmt


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint after verifying its checksum; a missing or damaged file is a BellmaxError
    that names the file, says what failed and what to do (for a run's checkpoint.pt with older kept
    ones beside it: that --resume continues from the newest valid one).

    mmap=True maps the tensors' storages from the file instead of reading them: what is never
    touched (the replay buffer, when only evaluating) costs neither time nor memory (the checksum
    still reads the file once)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise BellmaxError(f"no checkpoint at {path}: train with --checkpoint-every N or let a run finish first")
    try:
        return _read_checkpoint(path, mmap)
    except BellmaxError as exc:
        older = [p.name for _, p in step_checkpoints(path.parent) if not os.path.samefile(p, path)]
        if path.name != CHECKPOINT_FILE or not older:
            raise
        raise BellmaxError(f"{exc}; the run keeps older checkpoints ({', '.join(older)}): `bellmax train ALGO "
                           f"--resume {path.parent}` continues from the newest valid one") from None


def _read_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at `path`, verified; BellmaxError naming the file when it is damaged."""
    import torch

    verify_checkpoint(path)
    try:
        # Our own file format holds NumPy RNG states and the pickled env, hence weights_only=False:
        # load checkpoints only from runs you trust, as with any pickle.
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_checkpoint_pickle)
    except Exception as exc:
        raise BellmaxError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}); "
            "restore it from a copy or retrain"
        ) from None
    if not isinstance(state, dict) or "algo" not in state or "config" not in state:
        raise BellmaxError(f"{path} is not a bellmax checkpoint (no algo/config entries)")
    return state


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's kept checkpoints `checkpoint-STEP.pt`, newest first."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*.pt"):
        step = path.stem.removeprefix("checkpoint-")
        if step.isdigit():
            found.append((int(step), path))
    return sorted(found, reverse=True)


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).exists() or bool(step_checkpoints(run_dir))


def save_run_checkpoint(run_dir: Path, state: dict[str, Any], step: int, keep: int) -> None:
    """Write the run's checkpoint at `step` as checkpoint-STEP.pt, make checkpoint.pt a second name
    of it, and delete the kept ones beyond the newest `keep`. A kill at any moment leaves
    checkpoint.pt naming a whole checkpoint (the new one or the one before)."""
    run_dir = Path(run_dir)
    kept = run_dir / f"checkpoint-{step}.pt"
    save_checkpoint(kept, state)
    _second_name(kept, run_dir / CHECKPOINT_FILE)
    for _, old in step_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)


def _second_name(source: Path, name: Path) -> None:
    """Make `name` a hard link to `source`, replacing what was there atomically; on a file system
    without hard links, an atomic copy."""
    import shutil

    link = name.with_name(f".{name.name}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(source, link)
    except OSError:
        atomic_write(name, lambda f: shutil.copyfileobj(source.open("rb"), f, 1 << 22))
        return
    os.replace(link, name)


def load_run_checkpoint(run_dir: Path, notify: Callable[[str], None]) -> dict[str, Any]:
    """The run's newest checkpoint that verifies, for --resume: checkpoint.pt, or when it is damaged
    the newest valid checkpoint-STEP.pt (saying so through `notify`; the damaged files are renamed
    NAME.damaged, kept for inspection and out of the way, and checkpoint.pt names the one used)."""
    run_dir = Path(run_dir)
    newest = run_dir / CHECKPOINT_FILE
    candidates = [newest] if newest.exists() else []
    candidates += [p for _, p in step_checkpoints(run_dir)
                   if not (newest.exists() and os.path.samefile(p, newest))]
    if not candidates:
        raise BellmaxError(f"no checkpoint in {run_dir}: train with --checkpoint-every N or let a run finish first")
    failures: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            state = _read_checkpoint(path)  # not load_checkpoint: its hint is to resume, which this is
        except BellmaxError as exc:
            failures.append((path, str(exc)))
            continue
        if failures:
            _set_aside(run_dir, [p for p, _ in failures])
            _second_name(path, newest)
            notify(f"{failures[0][1]}; resuming from {path.name} instead, the newest valid checkpoint "
                   f"(step {state.get('global_step', '?')}); the damaged file(s) are kept as *.damaged")
        return state
    raise BellmaxError(failures[0][1] if len(failures) == 1 else
                       f"{failures[0][1]}; and none of the older checkpoints is valid either "
                       f"({', '.join(p.name for p, _ in failures[1:])})")


def _set_aside(run_dir: Path, damaged: list[Path]) -> None:
    """Rename damaged checkpoints, and every other name of the same file, NAME.damaged: kept for
    inspection, out of the rotation (checkpoint.pt, when it is a second name, is only removed)."""
    newest = run_dir / CHECKPOINT_FILE
    names = [newest] + [p for _, p in step_checkpoints(run_dir)]
    for path in damaged:
        if not path.exists():
            continue
        same = [n for n in names if n.exists() and os.path.samefile(n, path)]
        kept = [n for n in same if n != newest]
        for name in kept:
            os.replace(name, name.with_name(name.name + ".damaged"))
        if newest in same:
            if kept:
                newest.unlink()
            else:
                os.replace(newest, newest.with_name(newest.name + ".damaged"))


def read_run_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BellmaxError(f"run directory {run_dir} does not exist")
    path = run_dir / MODEL_RUN_CONFIG_FILE
    if not path.exists():
        path = run_dir / CONFIG_FILE
    if not path.exists():
        raise BellmaxError(f"{run_dir} is not a bellmax run directory (no {CONFIG_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BellmaxError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_metrics(run_dir: Path, damaged: list[int] | None = None,
                 keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl. A damaged line (cut by a crash, a flipped byte; with `keep`,
    also an object for which keep(row) is False) is skipped, never the rows after it; its line
    number goes into `damaged` when a list is given."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict) and (keep is None or keep(row)):
                rows.append(row)
            elif damaged is not None:
                damaged.append(number)
    return rows


def line_list(numbers: list[int], shown: int = 5) -> str:
    """"2, 3, 5", or the first `shown` of many and "...": line numbers for a message."""
    return ", ".join(map(str, numbers[:shown])) + (" ..." if len(numbers) > shown else "")


def skipped_lines_message(path: Path, damaged: list[int]) -> str:
    """The one line that reports the damaged lines `read_metrics` skipped in `path`."""
    return f"{path}: skipped {len(damaged)} damaged line(s) (line {line_list(damaged)}); the rows around them are kept"


def remove_dead_writers_files(run_dir: Path) -> int:
    """Delete the temporary files (`.NAME.XXXX.tmp`) that writers killed mid-write left in `run_dir`,
    up to a whole checkpoint each; call it only while holding the run's lock. Returns the bytes freed."""
    freed = 0
    for path in Path(run_dir).glob(".*.tmp"):
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except OSError:  # gone already, or not ours to delete: leave it
            continue
    return freed


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def lock_run_dir(run_dir: Path) -> IO[str] | None:
    """An exclusive lock on `run_dir`, held while the returned file stays open: a second process
    (the same run resumed twice, a scheduler's requeue while the first job still runs) gets a clear
    error instead of interleaving metrics and checkpoints. The OS drops the lock when the process
    ends, however it ends, so a killed run never leaves a stale lock. None where there is no flock."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    f = open(Path(run_dir) / LOCK_FILE, "a+")  # noqa: SIM115 (held open on purpose: the lock lives with it)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        if holder == str(os.getpid()):
            raise BellmaxError(f"{run_dir} is still open in this process: close the earlier Run "
                               "(`run.close()`, or open it with `with Run(...) as run:`) first") from None
        raise BellmaxError(f"{run_dir} is in use by another process (pid {holder}); "
                           "let it finish or stop it (Ctrl-C checkpoints first), then try again") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def make_run_dir(run_dir: Path) -> None:
    """Create `run_dir` (and its parents), or one clear error when it cannot be (a read-only or
    virtual file system, a path under a regular file, a name too long)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise unwritable_run_dir(run_dir, exc) from None


def unwritable_run_dir(run_dir: Path, exc: OSError) -> BellmaxError:
    return BellmaxError(f"cannot write the run directory {str(run_dir)[:200]}: {exc.strerror or exc}; "
                        "pick a --run-dir you can write")


def check_run_dir_free(run_dir: Path) -> None:
    """Raise the error `lock_run_dir` would, without keeping the lock (a quick check before a long load)."""
    lock = lock_run_dir(run_dir)
    if lock is not None:
        lock.close()


class Run:
    """Owns one run directory: writes config.json, logs metrics, holds the progress bar.

    With `resume_step`, metrics logged after that step (by a run that was killed after its last
    checkpoint) are dropped so the resumed run continues the record without duplicates, in
    metrics.jsonl, metrics.csv and TensorBoard alike.
    """

    def __init__(self, run_dir: Path, algo: str, config: dict[str, Any], *, preset: str | None = None,
                 resume_step: int | None = None, tensorboard: bool = True, progress: bool = False,
                 config_file: str = CONFIG_FILE):
        self.dir = Path(run_dir)
        self.config_file = config_file  # MODEL_RUN_CONFIG_FILE where the run also holds a Hugging Face model
        make_run_dir(self.dir)
        self._lock = lock_run_dir(self.dir)  # before anything in the directory is rewritten
        freed = remove_dead_writers_files(self.dir)  # no other writer holds the lock: theirs died with them
        if freed:
            print(f"{self.dir}: removed {freed / 2**20:.1f} MiB of temporary files a killed writer left",
                  file=sys.stderr)
        self.algo = algo
        self.start_time = time.perf_counter()
        self.checkpointed_at: int | None = resume_step  # the step of the checkpoint on disk, if known
        if resume_step is None:
            from bellmax import __version__

            meta = {"algo": algo, "config": config, "preset": preset, "bellmax_version": __version__}
            self.rows: list[dict[str, Any]] = []
        else:  # the first start's record, with the fields a resume may change (total_steps, device, ...)
            meta = {**read_run_config(self.dir), "config": config}
            damaged: list[int] = []
            self.rows = [r for r in read_metrics(self.dir, damaged) if r.get("step", 0) <= resume_step]
            if damaged:
                print(skipped_lines_message(self.dir / METRICS_JSONL, damaged), file=sys.stderr)
        atomic_write_text(self.dir / self.config_file, json.dumps(meta, indent=2) + "\n")
        self._columns: list[str] = []
        self._rewrite_metrics()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # a deep event queue: with the default (10) every add_scalar waits for the writer thread,
            # about 0.35 ms per scalar here, which was most of A2C's logging time; metrics.jsonl and
            # metrics.csv, written at once, stay the record a crash cannot lose. On a resume, TensorBoard
            # drops the events after the checkpoint's step (purge_step drops that step and later ones)
            purge_step = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(self.dir / "tb"), purge_step=purge_step, max_queue=1000, flush_secs=30)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._show_progress = progress

    def update_config(self, config: dict[str, Any]) -> None:
        """Record the config training actually runs with (`learn` sets the budget) in config.json."""
        meta = read_run_config(self.dir)
        if meta.get("config") != config:
            atomic_write_text(self.dir / self.config_file, json.dumps({**meta, "config": config}, indent=2) + "\n")

    # -- metrics ------------------------------------------------------------------------------
    def _rewrite_metrics(self) -> None:
        self._columns = []
        for row in self.rows:
            self._columns += [k for k in row if k not in self._columns]
        atomic_write_text(self.dir / METRICS_JSONL, "".join(json.dumps(r) + "\n" for r in self.rows))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.dir / METRICS_CSV, out.getvalue())

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record scalars at `step` in metrics.jsonl, metrics.csv and TensorBoard."""
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        self.rows.append(row)
        with open(self.dir / METRICS_JSONL, "a") as f:
            f.write(json.dumps(row) + "\n")
        if any(k not in self._columns for k in row):
            self._rewrite_metrics()  # a new key: widen the CSV header
        else:
            with open(self.dir / METRICS_CSV, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None:
                    self._tb.add_scalar(key, value, step)

    # -- progress bar -------------------------------------------------------------------------
    def start_progress(self, total_steps: int, done_steps: int) -> None:
        if not self._show_progress:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        # about 75 columns: fits an 80-column terminal (the run's elapsed time is printed at its end)
        self._progress = Progress(
            TextColumn(f"[bold]{self.algo}[/]"),
            BarColumn(bar_width=10),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[sps]:>6} steps/s"),
            TextColumn("train return {task.fields[ret]}"),  # rollout/ep_return: the stochastic policy's
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, completed=done_steps, sps="-", ret="-")

    def update_progress(self, step: int, sps: float, recent_return: float | None) -> None:
        if self._progress is not None and self._task is not None:
            ret = "-" if recent_return is None else f"{recent_return:.1f}"
            self._progress.update(self._task, completed=step, sps=f"{sps:,.0f}", ret=ret)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def notify(self, message: str) -> None:
        """One line on stderr, above the progress bar when one is showing (instead of under its redraw)."""
        if self._progress is not None:  # soft_wrap: a long line (a path) is never broken mid-word
            self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

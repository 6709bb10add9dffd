"""The payment consumers as subprocesses: started, `kill -9`'d at their crash points, restarted.

Each partition of `payments` has one worker with a stable owner name (so a restarted worker takes
its own unfinished claims over at once). While a partition has kills left in its budget, each
incarnation is told to stop at a crash point (point A, after the gateway answered; point B,
after the record and before the offset commit; alternating) at a seeded message number; when it
prints `CRASH-POINT`, this pool sends it SIGKILL and starts the next incarnation.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

from samsa import lifecycle

STOP_TIMEOUT_S = 15.0


@dataclass(slots=True)
class WorkerSettings:
    mode: str  # "exactly-once" | "naive"
    bootstrap: str
    gateway: str
    db: str
    db_schema: str | None
    client_timeout_s: float
    kills_per_worker: int
    kill_every: int
    seed: int


@dataclass(slots=True)
class _Worker:
    partition: int
    incarnation: int = 0
    kills_left: int = 0
    process: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None


@dataclass(slots=True)
class WorkerPool:
    settings: WorkerSettings
    partitions: int
    kills: Counter[str] = field(default_factory=Counter)
    stats: list[dict[str, int]] = field(default_factory=list)
    _workers: list[_Worker] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: bool = False

    def start(self) -> None:
        for partition in range(self.partitions):
            worker = _Worker(partition, kills_left=self.settings.kills_per_worker)
            self._workers.append(worker)
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        s = self.settings
        worker.incarnation += 1
        rng = random.Random(f"{s.seed}/{worker.partition}/{worker.incarnation}")
        kill_at = rng.randint(1, max(1, s.kill_every)) if worker.kills_left > 0 else 0
        point = "A" if (worker.partition + worker.incarnation) % 2 == 1 else "B"
        command = [
            sys.executable,
            "-m",
            "samsa.payments.worker",
            f"--bootstrap={s.bootstrap}",
            f"--gateway={s.gateway}",
            f"--db={s.db}",
            f"--mode={s.mode}",
            f"--partition={worker.partition}",
            f"--owner=payments-{worker.partition}",
            f"--client-timeout-s={s.client_timeout_s}",
            f"--kill-at={kill_at}",
            f"--kill-point={point}",
        ]
        if s.db_schema is not None:
            command.append(f"--db-schema={s.db_schema}")
        # A group of its own: Ctrl-C reaches the demo, which stops its workers in order.
        worker.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, bufsize=1, **lifecycle.child_options()
        )
        worker.reader = threading.Thread(
            target=self._read, args=(worker, worker.process), daemon=True
        )
        worker.reader.start()

    def _read(self, worker: _Worker, process: subprocess.Popen[str]) -> None:
        stdout = process.stdout
        if stdout is None:
            return
        for line in stdout:
            if line.startswith("CRASH-POINT "):
                point = line.split()[1]
                os.kill(process.pid, signal.SIGKILL)  # kill -9, between charge and commit
                process.wait()
                with self._lock:
                    self.kills[point] += 1
                    worker.kills_left -= 1
                    if not self._stopping:
                        self._spawn(worker)
                return
            if line.startswith("STATS "):
                with self._lock:
                    self.stats.append(json.loads(line.removeprefix("STATS ")))
        process.wait()
        with self._lock:
            if not self._stopping:  # died on its own: report it, and keep the partition served
                print(
                    f"payment worker {worker.partition} exited with {process.returncode}",
                    file=sys.stderr,
                )
                self.kills["unexpected_exit"] += 1
                self._spawn(worker)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self._workers)
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            process = worker.process
            if process is None:
                continue
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if worker.reader is not None:
                worker.reader.join(STOP_TIMEOUT_S)

    def alive(self) -> bool:
        with self._lock:
            return all(w.process is not None and w.process.poll() is None for w in self._workers)

"""The training loop: accumulate → clip → step → schedule, validate, checkpoint, resume.

What the trainer needs from a task (see `TranslationTask`):
    task.model, task.criterion       the network and its loss
    task.train_loader                a `paragen.interfaces.BatchLoader`
    task.validate()                  {"valid.loss": ..., "valid.bleu": ...}
    task.config                      the resolved config, stored in every checkpoint
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from itertools import islice
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from tqdm import tqdm

from paragen.checkpoint import (assign_weights, load_checkpoint, load_matching_weights,
                                model_state, rng_state,
                                save_checkpoint, set_rng_state)
import paragen.lr_schedulers  # noqa: F401  (registers the schedules a config names)
from paragen.errors import ConfigError, DataError, ParagenError, TrainingInterrupted
from paragen.interfaces import ProgressAware
from paragen.optim import freeze_parameters, parameter_groups
from paragen.registry import build, register_trainer
from paragen.trainers.ema import WeightAverage
from paragen.trainers.resume import restore_optimizer
from paragen.trainers.run_folder import (RunLock, clear_run, holds_a_run, open_board,
                                         open_metrics_log, remove_orphaned_temp_files)

logger = logging.getLogger("paragen")


@register_trainer
class Trainer:
    def __init__(self, optimizer: Dict[str, Any] = None, lr_scheduler: Dict[str, Any] = None,
                 max_steps: int = 0, max_epochs: int = 0, max_minutes: float = 0.0,
                 update_freq: int = 1, clip_norm: float = 0.0, validate_interval: int = 1000,
                 save_dir: str = "checkpoints", keep_last: int = 5, assess_by: str = "valid.bleu",
                 early_stopping_patience: int = 0, log_interval: int = 50, resume: bool = True,
                 init_from: Optional[str] = None, compile: bool = False, overwrite: bool = False,
                 tensorboard: bool = False, ema_decay: float = 0.0,
                 freeze: Optional[List[str]] = None, *, env):
        if not (max_steps or max_epochs or max_minutes):
            raise ParagenError("task.trainer: set at least one of max_steps, max_epochs, max_minutes")
        self.optimizer_config = optimizer or {"class": "AdamW"}
        self.scheduler_config = lr_scheduler or {"class": "InverseSquareRoot"}
        self.max_steps, self.max_epochs, self.max_minutes = max_steps, max_epochs, max_minutes
        self.update_freq, self.clip_norm = update_freq, clip_norm
        self.validate_interval, self.save_dir, self.keep_last = validate_interval, save_dir, keep_last
        self.assess_by, self.patience = assess_by, early_stopping_patience
        self.higher_is_better = not assess_by.endswith("loss")
        self.log_interval, self.resume, self.env = log_interval, resume, env
        self.overwrite = overwrite  # a fresh run may replace another run's checkpoints
        for name, value, low in (("update_freq", update_freq, 1), ("log_interval", log_interval, 1),
                                 ("max_steps", max_steps, 0), ("max_epochs", max_epochs, 0),
                                 ("max_minutes", max_minutes, 0), ("clip_norm", clip_norm, 0),
                                 ("validate_interval", validate_interval, 0),
                                 ("keep_last", keep_last, 0),
                                 ("early_stopping_patience", early_stopping_patience, 0)):
            if value < low:
                raise ConfigError(f"task.trainer.{name}: must be ≥ {low}, got {value}")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"task.trainer.ema_decay: in [0, 1) (0: off; 0.999 averages "
                              f"about the last 1,000 updates), got {ema_decay}")
        # Validate, choose and save an average of the weights instead of the last ones
        # (trainers/ema.py); the trained weights are kept too, for resuming.
        self.ema_decay, self.ema = ema_decay, None
        self.init_from = init_from  # a checkpoint to start from (e.g. the AR teacher for GLAT)
        self.freeze = list(freeze or [])  # parameter name patterns kept at their start values
        self.compile = compile  # torch.compile the network (measured: docs/benchmarks.md)
        # every metrics.jsonl record also as TensorBoard scalars in save_dir/tensorboard
        self.tensorboard = tensorboard
        self.board = None
        self.step = self.epoch = self.batch_in_epoch = self.bad_validations = 0
        self.best: Optional[float] = None
        self.last_validated_step = -1
        self.rank_local, self._spare_batch = False, None
        self.train_seconds = 0.0  # inside optimizer updates only: the tokens/s denominator
        self.wall_seconds = 0.0  # everything, validation included: what max_minutes limits
        self.total_steps: Optional[int] = None  # from max_steps or max_epochs, set by train()
        self.stop_requested = False  # set by Ctrl-C / SIGTERM; the loop stops between updates
        self._consistent = True  # False from the optimizer step to the step count's increment
        self._rng_before_update: Optional[Dict[str, Any]] = None
        self._saved_step = 0  # the step of the newest checkpoint written or resumed from

    # ---------------------------------------------------------------- setup and state
    def _build_optimization(self, model: torch.nn.Module) -> None:
        self.optimizer = build("optimizer", self.optimizer_config, "task.trainer.optimizer",
                               params=parameter_groups(model))
        self.scheduler = build("lr_scheduler", self.scheduler_config, "task.trainer.lr_scheduler")
        self.scaler = torch.amp.GradScaler(enabled=self.env.precision == "fp16")
        self.ema = WeightAverage(model, self.ema_decay) if self.ema_decay else None

    def state_dict(self, task, rng: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """"model" is what evaluation and inference load: with ema_decay, the averaged
        weights; the trained ones are then "trained_model", which only resuming reads."""
        weights = {"model": model_state(task.model)}
        if self.ema is not None:
            weights = {"model": self.ema.state_dict(), "trained_model": weights["model"]}
        return {**weights, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng or rng_state(), "config": task.config,
                "trainer": {"step": self.step, "epoch": self.epoch,
                            "batch_in_epoch": self.batch_in_epoch, "best": self.best,
                            "bad_validations": self.bad_validations,
                            "last_validated_step": self.last_validated_step,  # no revalidation
                            "train_seconds": self.train_seconds,
                            "wall_seconds": self.wall_seconds}}

    def _restore(self, task, path: str) -> None:
        """Continue the run in `path`. The model must be the same; the optimizer class too
        (its moments are kept); changed optimizer settings (lr, betas, weight decay) and
        schedules take effect from here on, and are logged."""
        state = load_checkpoint(path)
        if not {"model", "optimizer", "trainer", "rng", "scaler"} <= set(state):
            raise DataError(f"{path}: not a training checkpoint of paragen (cannot resume "
                            f"from it; set task.trainer.overwrite: true to start over)")
        trained = state.get("trained_model")
        assign_weights(task.model, state["model"] if trained is None else trained,
                       f"{path} (resuming)")
        if self.ema is not None and trained is not None:
            self.ema.load_state_dict(state["model"])
        elif self.ema is not None:
            self.ema = WeightAverage(task.model, self.ema_decay)
            logger.warning("task.trainer.ema_decay: %s holds no weight average; it starts "
                           "from the resumed weights", path)
        elif trained is not None:
            logger.warning("task.trainer.ema_decay: 0, so the weight average in %s is dropped;"
                           " training continues from its trained weights", path)
        restore_optimizer(self.optimizer, self.optimizer_config, state, path)
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        for key, value in state["trainer"].items():
            setattr(self, key, value)
        self._saved_step = self.step
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step,
                    self.epoch, self.batch_in_epoch)

    def _save(self, task, name: str, rng: Optional[Dict[str, Any]] = None) -> None:
        if self.env.is_main:
            save_checkpoint(self.state_dict(task, rng), os.path.join(self.save_dir, name))
        self._saved_step = self.step

    # ---------------------------------------------------------------- the loop
    def train(self, task) -> Dict[str, Any]:
        os.makedirs(self.save_dir, exist_ok=True)
        lock = RunLock(self.save_dir).acquire() if self.env.is_main else None
        try:
            return self._train_locked(task)
        finally:
            if lock is not None:
                lock.release()

    def _train_locked(self, task) -> Dict[str, Any]:
        last = os.path.join(self.save_dir, "last.pt")
        resuming = self.resume and os.path.exists(last)
        if self.env.is_main:
            remove_orphaned_temp_files(self.save_dir)
            if not resuming and holds_a_run(self.save_dir):
                if not self.overwrite:
                    raise ConfigError(
                        f"task.trainer.save_dir: {self.save_dir} holds another run's checkpoints"
                        f" or log; resume it (resume: true, with its last.pt), use another "
                        f"save_dir, or set task.trainer.overwrite: true to replace them")
                clear_run(self.save_dir)
        if self.init_from and not resuming:
            loaded, fresh, unused = load_matching_weights(task.model, self.init_from)
            logger.info("initialized from %s: %s; fresh: %s; not used from it: %s",
                        self.init_from, _by_module(loaded), _by_module(fresh) or "nothing",
                        _by_module(unused) or "nothing")
        if self.freeze:
            frozen = freeze_parameters(task.model, self.freeze)
            logger.info("frozen: %s", _by_module(frozen))
        self._build_optimization(task.model)
        self.network = task.model  # what the criterion calls: DDP's wrapper when distributed
        if self.env.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(
                task.model, device_ids=[self.env.local_rank] if self.env.device.startswith(
                    "cuda") else None, find_unused_parameters=False)
        if self.compile:  # dynamic: batch shapes change every step
            self.network = torch.compile(self.network, dynamic=True)
        self.rank_local = task.train_loader.rank_local
        epoch_batches = task.train_loader.num_batches(0)  # None when streaming
        per_epoch = -(-epoch_batches // self.update_freq) if epoch_batches else None
        self.total_steps = self.max_steps or (self.max_epochs * per_epoch
                                              if self.max_epochs and per_epoch else None)
        if self.scheduler.needs_plan and not (self.total_steps or self.max_minutes):
            raise ConfigError("task.trainer.lr_scheduler.total_steps: auto needs max_steps, "
                               "max_minutes, or max_epochs over a corpus of known length")
        if resuming:
            self._restore(task, last)
        self.metrics_log = open_metrics_log(os.path.join(self.save_dir, "metrics.jsonl"))
        if self.tensorboard and self.env.is_main:
            self.board = open_board(os.path.join(self.save_dir, "tensorboard"))
        # Ctrl-C / SIGTERM ask the loop to stop after the update in progress, so the saved
        # state (weights, optimizer, RNG, data position) is one that an uninterrupted run also
        # passes through and resuming repeats it exactly. A second signal stops at once
        # (exit 130, nothing saved beyond the last checkpoint). SIGINT is set explicitly: a
        # process started in the background by a shell inherits it as ignored.
        self.stop_requested = False
        previous_handlers = {sig: signal.signal(sig, self._request_stop)
                             for sig in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        try:
            result = self._train_loop(task)
        except KeyboardInterrupt:
            raise  # a second Ctrl-C: stop now; the last checkpoint stands
        except Exception:
            # A failure between checkpoints (a bad line deep in a streamed corpus, a crash in
            # validation): keep the updates made since the last checkpoint, as the state after
            # the last complete update, then fail as before.
            if self._consistent and self.step > self._saved_step:
                # the RNG as the failed update found it: a resumed run repeats that update
                self._save(task, "last.pt", rng=self._rng_before_update)
                logger.error("training failed at step %d; saved %s (rerun to resume)",
                             self.step, last)
            raise
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            self.metrics_log.close()
            if self.board is not None:
                self.board.close()
        if self.stop_requested:
            logger.warning("interrupted at step %d: saved %s; rerun the same command to resume",
                           self.step, last)
            raise TrainingInterrupted(f"training interrupted at step {self.step}; "
                                      f"checkpoint saved to {last}")
        return result

    def _request_stop(self, signum, frame) -> None:
        if self.stop_requested:  # the second signal: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        logger.warning("stopping after the current update (press Ctrl-C again to stop now)")

    def _train_loop(self, task) -> Dict[str, Any]:
        task.model.train()
        progress = tqdm(total=self.max_steps or None, initial=self.step, unit="step",
                        disable=self.env.no_progress_bar or not self.env.is_main,
                        dynamic_ncols=True, mininterval=1.0)
        window = {"loss": 0.0, "nll_loss": 0.0, "ntokens": 0, "seconds": 0.0}
        scores: Dict[str, float] = {}
        clock = time.perf_counter() - self.wall_seconds
        while not self._finished():
            batches = task.train_loader.epoch_batches(self.epoch, start=self.batch_in_epoch)
            updates = self._rank_local_updates(batches) if self.rank_local else \
                _chunks(batches, self.update_freq * self.env.world_size)
            epoch_had_updates = self.batch_in_epoch > 0
            for update in self._recording_rng(updates):
                epoch_had_updates = True
                started = time.perf_counter()
                logs = self._update(task, update)
                elapsed = time.perf_counter() - started
                self.train_seconds += elapsed
                # Rank-local streams: every rank pulls update_freq batches per update, so this
                # position (stored by rank 0) is every rank's own position on resume.
                self.batch_in_epoch += self.update_freq if self.rank_local else len(update)
                self.step += 1
                self._consistent = True
                for key, value in logs.items():
                    window[key] = window.get(key, 0) + value
                window["seconds"] += elapsed
                progress.update(1)
                if self.step % self.log_interval == 0:
                    self._log_window(window, progress)
                if self.validate_interval and self.step % self.validate_interval == 0:
                    scores = self._validate(task)
                self.wall_seconds = time.perf_counter() - clock
                if self._finished() or self._stop_agreed():
                    break
            else:  # the epoch ran out
                if not epoch_had_updates:
                    raise DataError("task.data.train: an epoch of the training data yields no "
                                    "batch (empty corpus, or every line filtered out)")
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            if self.stop_requested:
                progress.close()
                self._save(task, "last.pt")
                return {"train_seconds": self.train_seconds, "wall_seconds": self.wall_seconds}
        progress.close()
        if self.last_validated_step != self.step:
            scores = self._validate(task)
        self._save(task, "last.pt")
        return {**scores, "train_seconds": self.train_seconds, "wall_seconds": self.wall_seconds}

    def _stop_agreed(self) -> bool:
        """Whether to stop for a signal; under DDP all ranks agree (one tiny all-reduce), so
        none is left waiting in a collective."""
        if self.env.world_size == 1:
            return self.stop_requested
        self.stop_requested = self._sum_over_ranks(int(self.stop_requested)) > 0
        return self.stop_requested

    def _finished(self) -> bool:
        return bool((self.max_steps and self.step >= self.max_steps)
                    or (self.max_epochs and self.epoch >= self.max_epochs)
                    or (self.max_minutes and self.wall_seconds >= 60 * self.max_minutes)
                    or (self.patience and self.bad_validations >= self.patience))

    def _planned_steps(self) -> Optional[int]:
        """How many updates this run will make (for `total_steps: auto` schedules): the step or
        epoch limit, or under max_minutes the updates the time left allows at the pace so far
        (validation included), whichever comes first; None before a time budget's first update."""
        plans = [self.total_steps] if self.total_steps else []
        if self.max_minutes and self.step and self.wall_seconds:
            seconds_left = 60 * self.max_minutes - self.wall_seconds
            plans.append(self.step + int(seconds_left * self.step / self.wall_seconds))
        return min(plans) if plans else None

    def _update(self, task, micro_batches: List[Dict[str, Any]]) -> Dict[str, float]:
        """One optimizer step over `micro_batches`, each weighted by its share of the tokens,
        so accumulating N batches equals one batch N times as large.

        Under DDP every rank sees the same list (the sampler is deterministic) and runs its
        own slice `[rank::world]`; weights use the global token count and are multiplied by
        the world size because DDP averages gradients. Gradients are all-reduced only on a
        rank's last micro-batch (`no_sync` before), so N ranks equal N-fold accumulation.
        """
        if isinstance(task.criterion, ProgressAware):  # schedules inside the loss (GLAT's ratio)
            task.criterion.set_progress(self.step, self.total_steps)
        world, rank = self.env.world_size, self.env.rank
        if self.rank_local:  # this rank's own batches; the token total is summed over ranks
            local = micro_batches
            total_tokens = self._sum_over_ranks(sum(int(b["ntokens"]) for b in local))
        else:
            local = micro_batches[rank::world]
            total_tokens = sum(int(b["ntokens"]) for b in micro_batches)
        # The last update of an epoch may hold fewer batches than ranks: an idle rank still
        # runs one zero-weight pass, so that every rank joins the gradient all-reduce.
        idle = not local
        if idle and not micro_batches and self._spare_batch is None:
            raise ParagenError(f"rank {rank} got no training batch this epoch: the corpus "
                               f"has fewer lines than ranks × workers")
        local = local or micro_batches[:1] or [self._spare_batch]
        totals = {"loss": 0.0, "nll_loss": 0.0, "ntokens": 0}
        for i, batch in enumerate(local):
            batch = {k: v.to(self.env.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            sync = contextlib.nullcontext() if world == 1 or i == len(local) - 1 \
                else self.network.no_sync()
            with sync:
                with self.env.autocast():
                    loss, logs = self._forward_loss(task, batch)
                weight = 0.0 if idle else int(batch["ntokens"]) / total_tokens * world
                self.scaler.scale(loss * weight).backward()
            for key, value in logs.items():  # the loss's own counters too (e.g. glanced)
                totals[key] = totals.get(key, 0) + (0 if idle else value)
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        if self.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), self.clip_norm)
        self.lr = self.scheduler.apply(self.optimizer, self.step + 1, self._planned_steps())
        self._consistent = False  # weights change; the step count follows in train_loop
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(task.model, self.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        return totals

    def _forward_loss(self, task, batch: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The training loss of one batch and its counters: the hook a trainer subclass
        overrides (ParaGen's `_forward_loss`) to change what a training step computes, e.g. an
        extra pass before the loss. Validation scores the plain criterion, not this."""
        return task.criterion(self.network, batch)

    def _recording_rng(self, updates: Iterator[List]) -> Iterator[List]:
        """`updates`, each recorded with the random state from before its batches were drawn:
        drawing may use it (masked-LM masks), so an update that fails, saved with that
        state, is repeated exactly, masks included, when the run resumes."""
        updates = iter(updates)
        while True:
            state = rng_state()
            update = next(updates, None)
            if update is None:
                return
            self._rng_before_update = state
            yield update

    def _rank_local_updates(self, batches: Iterator) -> Iterator[List]:
        """Updates of up to update_freq batches of this rank's own stream, until every rank's
        stream has ended: a rank that ran out first gets empty updates (zero-weight passes)."""
        batches = iter(batches)
        while True:
            update = list(islice(batches, self.update_freq))
            if update:
                self._spare_batch = update[0]  # what an idle pass runs on, at zero weight
            if self._sum_over_ranks(len(update)) == 0:
                return
            yield update

    def _sum_over_ranks(self, value: int) -> int:
        if self.env.world_size == 1:
            return value
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64, device=self.env.device)
        dist.all_reduce(total)
        return int(total.item())

    # ---------------------------------------------------------------- logging and validation
    def _log_window(self, window: Dict[str, float], progress: tqdm) -> None:
        record = {"step": self.step, "epoch": self.epoch, "lr": self.lr,
                  "loss": window["loss"] / max(window["ntokens"], 1),
                  "nll_loss": window["nll_loss"] / max(window["ntokens"], 1),
                  "tokens_per_s": window["ntokens"] / max(window["seconds"], 1e-9),
                  "train_seconds": round(self.train_seconds, 1)}
        # Whatever else the criterion reports (glanced tokens, CTC-infeasible sentences, ...),
        # summed over the window's batches (rank 0's share of them under DDP).
        record.update({key: round(value, 4) for key, value in window.items()
                       if key not in ("loss", "nll_loss", "ntokens", "seconds")})
        progress.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{self.lr:.2e}",
                             tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        self._write_record(record)
        for key in window:
            window[key] = 0 if key == "ntokens" else 0.0

    def _write_record(self, record: Dict[str, Any]) -> None:
        if self.env.is_main:
            self.metrics_log.write(json.dumps(record) + "\n")
            self.metrics_log.flush()
            if self.board is not None:
                group = "valid" if record.get("validation") else "train"
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key not in ("step", "validation"):
                        name = key if "." in key else f"{group}/{key}"
                        self.board.add_scalar(name.replace(".", "/", 1), value, self.step)
                self.board.flush()

    def _validate(self, task) -> Dict[str, Any]:
        self.last_validated_step = self.step
        return self._validate_synced(task)

    def _validate_synced(self, task) -> Dict[str, Any]:
        """Validation and checkpoints on rank 0; the other ranks wait at a barrier and then
        take rank 0's early-stopping count, so all ranks stop at the same step."""
        if self.env.world_size > 1:
            import torch.distributed as dist

            scores = self._validate_main(task) if self.env.is_main else {}
            state = [self.bad_validations, self.best]
            dist.broadcast_object_list(state, src=0)
            self.bad_validations, self.best = state
            dist.barrier()
            return scores
        return self._validate_main(task)

    def _validate_main(self, task) -> Dict[str, Any]:
        with self.ema.swapped_in(task.model) if self.ema else contextlib.nullcontext():
            scores = task.validate()
        scores["step"] = self.step
        value = scores.get(self.assess_by)
        improved = value is not None and (
            self.best is None or (value > self.best if self.higher_is_better else value < self.best))
        if improved:
            self.best, self.bad_validations = value, 0
        elif value is not None:
            self.bad_validations += 1
        logger.info("step %d | %s | best %s %s", self.step,
                    " | ".join(f"{k} {v:.3f}" for k, v in scores.items()
                               if isinstance(v, float)), self.assess_by, self.best)
        self._write_record({"validation": True, **scores})
        task.model.train()
        self._save(task, f"checkpoint_{self.step}.pt")
        if improved:
            self._save(task, "best.pt")
        self._save(task, "last.pt")
        self._prune_step_checkpoints()
        return scores

    def _prune_step_checkpoints(self) -> None:
        if not self.env.is_main:
            return
        steps = sorted(int(name[len("checkpoint_"):-3]) for name in os.listdir(self.save_dir)
                       if name.startswith("checkpoint_") and name.endswith(".pt"))
        for step in steps[:-self.keep_last] if self.keep_last > 0 else []:
            os.remove(os.path.join(self.save_dir, f"checkpoint_{step}.pt"))


def _by_module(names: List[str]) -> str:
    """`encoder (68 tensors), head (4 tensors)`: what init_from loaded, by top-level module."""
    counts: Dict[str, int] = {}
    for name in names:
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + 1
    return ", ".join(f"{module} ({count} tensor{'s' * (count > 1)})"
                     for module, count in counts.items())


def _chunks(iterator: Iterator, size: int) -> Iterator[List]:
    iterator = iter(iterator)
    while chunk := list(islice(iterator, size)):
        yield chunk

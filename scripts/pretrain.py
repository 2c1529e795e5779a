"""Pretrain NDT1-stitch on many sessions, on one or many GPUs (or CPU processes), with PyTorch DDP.

    python scripts/pretrain.py --out-dir runs/a                                   # one process
    python scripts/pretrain.py --data-dir folder_of_nwb_files --out-dir runs/b    # your own sessions
    torchrun --standalone --nproc_per_node 8 scripts/pretrain.py --config run.yaml --out-dir runs/a
    torchrun --standalone --nproc_per_node 8 scripts/pretrain.py --config run.yaml --out-dir runs/a --resume

docs/pretrain.md explains the multi-node launch and every option (``--help`` lists them).

Windows (one per training trial) are streamed from NWB files (data.WindowDataset). One optimizer
step sees ``--global-batch-size`` windows, whatever the number of processes: each of
the W ranks takes its share from a DistributedSampler and cuts it into ``--grad-accum``
micro-batches; DDP averages the gradients over ranks and we average over micro-batches. The
objective is fit_ndt1_stitch's (masked Poisson likelihood, held-out units predicted from the
rest); the forward/backward pass and the clipped optimizer step are the course's own
(training.py). Rank 0 writes OUT_DIR/log.jsonl (loss, windows/s, tokens/s) and checkpoints.
"""
import gc
import json
from contextlib import nullcontext
from itertools import islice

import torch
from torch.utils.data import DataLoader

from tutorial_utils import distributed
from tutorial_utils.models import NDT1Stitch
from tutorial_utils.objectives import StitchedMaskedAutoencoding
from tutorial_utils.pretraining import (CHECKPOINT_NAME, LOG_NAME, FileGroupedSampler, ThroughputLog, load_checkpoint,
                                        load_windows, micro_batch_seed, micro_batches, parse_options,
                                        save_checkpoint, warmup_cosine)
from tutorial_utils.runtime import autocast_dtype, seed_everything
from tutorial_utils.training import backward_pass, gradient_scaler, optimizer_step


def main(argv=None) -> None:
    args = parse_options(argv, world_size=distributed.world_size_from_env())  # bad flags fail before any setup
    context = distributed.setup(args.device)
    rank, world_size, device = context.rank, context.world_size, context.device
    args.out_dir.mkdir(parents=True, exist_ok=True)

    # Data: windows streamed from NWB files; the sampler deals out window ids, disjoint across ranks.
    windows = load_windows(args)
    sampler = FileGroupedSampler(windows.dataset, num_replicas=world_size, rank=rank, drop_last=True)
    per_rank = args.global_batch_size // world_size
    loader = DataLoader(range(len(windows)), batch_size=per_rank, sampler=sampler, drop_last=True,
                        collate_fn=windows.collate, num_workers=args.num_workers,  # workers read files ahead
                        persistent_workers=args.num_workers > 0)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(windows)} windows are fewer than one global batch of {args.global_batch_size}")

    # Model, objective, optimizer: the same seed on every rank, so every copy starts identical.
    seed_everything(args.seed)
    model = NDT1Stitch(windows.n_inputs, windows.n_bins, windows.n_outputs, d_model=args.d_model,
                       n_layers=args.n_layers, n_heads=args.n_heads, dropout=args.dropout,
                       session_names=windows.session_names).to(device)
    objective = StitchedMaskedAutoencoding(args.mask_ratio, input_dropout=args.input_dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, args.warmup_steps, args.max_steps))
    amp_dtype = autocast_dtype(device, args.autocast)
    scaler = gradient_scaler(device, amp_dtype)

    checkpoint = args.out_dir / CHECKPOINT_NAME
    start_step = 0
    if args.resume and checkpoint.exists():
        start_step = load_checkpoint(checkpoint, args, model=model, optimizer=optimizer, scheduler=scheduler,
                                     scaler=scaler)
        if context.is_main:
            print(f"resuming from {checkpoint} at step {start_step}")
    elif args.resume and context.is_main:
        print(f"--resume: no checkpoint in {args.out_dir} yet, starting from step 0")
    ddp_model = distributed.wrap(model, context)  # DDP after loading: it broadcasts rank 0's weights

    log = ThroughputLog(args.out_dir / LOG_NAME if context.is_main else None, windows.n_bins)
    window_log = (args.out_dir / f"windows_rank{rank}.jsonl").open("a") if args.log_window_ids else None
    if context.is_main:
        print(f"{world_size} rank(s) on {device}, backend {context.backend}, {len(windows)} windows from "
              f"{len(windows.session_names)} sessions, {steps_per_epoch} steps per epoch, autocast {amp_dtype}")

    ddp_model.train()
    epoch = None
    for step in range(start_step, args.max_steps):
        if step // steps_per_epoch != epoch:  # a new epoch, or the first step (maybe resuming inside an epoch)
            epoch, position = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)  # reshuffle: a new order each epoch, the same on every rank
            batches = islice(iter(loader), position, None)
        window_ids, batch = next(batches)  # this rank's share of the global batch
        batch = batch.to(device)
        if window_log is not None:
            window_log.write(json.dumps({"step": step, "epoch": epoch, "windows": window_ids.tolist()}) + "\n")

        step_loss = 0.0
        for a, micro_batch in enumerate(micro_batches(batch, args.grad_accum)):
            generator = seed_everything(micro_batch_seed(args.seed, step, slot=world_size * a + rank))
            last = a == args.grad_accum - 1
            with nullcontext() if last or context.backend is None else ddp_model.no_sync():  # all-reduce once
                losses = backward_pass(ddp_model, objective, micro_batch, generator, amp_dtype, scaler,
                                       loss_weight=1.0 / args.grad_accum)
            step_loss += losses["total"] / args.grad_accum
        lr = scheduler.get_last_lr()[0]  # this step's
        optimizer_step(ddp_model, optimizer, scaler)
        scheduler.step()
        log.count(len(window_ids))

        done = step + 1
        if done % args.log_every == 0 or done == args.max_steps:
            loss = distributed.mean_over_ranks(float(step_loss), context)
            windows_per_s, tokens_per_s = log.rates()
            per_rank_windows = distributed.gather(windows_per_s, context)
            per_rank_tokens = distributed.gather(tokens_per_s, context)
            log.write({"step": done, "epoch": epoch, "loss": loss, "lr": lr,
                       "world_size": world_size, "windows_per_s": sum(per_rank_windows),
                       "tokens_per_s": sum(per_rank_tokens), "windows_per_s_per_rank": per_rank_windows,
                       "tokens_per_s_per_rank": per_rank_tokens})
            if context.is_main:
                print(f"step {done:>6}  loss {loss:.5f}  {sum(per_rank_windows):8.1f} windows/s  "
                      f"{sum(per_rank_tokens):10.0f} tokens/s")
        if done % args.save_every == 0 or done == args.max_steps:
            if context.is_main:
                save_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                step=done, epoch=epoch, args=args)
            distributed.barrier(context)  # nobody runs ahead of a checkpoint being written
        if done == args.crash_at_step:  # test hook: die like a killed job would, without cleaning up
            raise SystemExit(f"--crash-at-step {done}: stopping on purpose")

    if window_log is not None:
        window_log.close()
    # Free what holds communication state (DDP's reducer, the loader's iterator) while Python is fully
    # alive, then leave the group together: gloo objects freed during interpreter shutdown can abort
    # a rank ("terminate called without an active exception").
    ddp_model = batches = None
    gc.collect()
    distributed.teardown(context)


if __name__ == "__main__":
    main()

"""Sharded PCoreSet selection: every rank holds a contiguous block of the
pool. Run with: torchrun --standalone --nproc_per_node=2 distributed_select.py"""
import numpy as np
import torch.distributed as dist

import pcoreset.distributed as pd

dist.init_process_group("gloo")                            # torchrun set the environment
rank = dist.get_rank()
shard = np.load(f"pool.{rank}.npy", mmap_mode="r")         # this rank's rows
labeled = np.load("labeled.npy")                           # global row indices, the same on every rank
picks = pd.select(shard, labeled, 20, labeled_is_global=True)   # the same picks on every rank
if rank == 0:
    np.save("picks_api.npy", picks)
dist.destroy_process_group()

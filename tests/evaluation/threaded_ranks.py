"""DDP ranks simulated by threads, for Lightning-free code that takes a ctdm.evaluation.Ranks: each rank
runs the same function in its own thread, and all_gather stacks every rank's tensor of the same call."""

import itertools
import threading

import torch

from ctdm.evaluation import Ranks


class ThreadedRanks:
    def __init__(self, world: int):
        self.world = world
        self.barrier = threading.Barrier(world)
        self.slots: dict[int, list] = {}

    def ranks(self, rank: int) -> Ranks:
        calls = itertools.count()

        def all_gather(tensor: torch.Tensor) -> torch.Tensor:
            call = next(calls)
            self.slots.setdefault(call, [None] * self.world)[rank] = tensor
            self.barrier.wait()  # every rank has put its tensor
            stacked = torch.stack(self.slots[call])
            self.barrier.wait()  # every rank has read them
            return stacked

        return Ranks(rank, self.world, all_gather)

    def run(self, fn) -> list:
        """fn(ranks) on every rank at once; the results in rank order (a rank's error is raised)."""
        results, errors = [None] * self.world, []

        def target(rank):
            try:
                results[rank] = fn(self.ranks(rank))
            except BaseException as err:  # noqa: BLE001  (re-raised below, in the test's thread)
                errors.append(err)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

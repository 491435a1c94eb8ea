"""GlobalBatchNorm: two gloo processes, each with half a batch, compute what one BatchNorm does on all of it."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from transferkit.engine.syncbn import GlobalBatchNorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    torch.manual_seed(0)
    return torch.randn(8, 3, 5, 5) * 3 + 1, torch.rand(8, 3, 5, 5)


def _worker(rank, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        x, w = _batch()
        bn = GlobalBatchNorm().apply(nn.Sequential(nn.BatchNorm2d(3)))[0]
        part = x[4 * rank:4 * (rank + 1)].clone().requires_grad_(True)
        y = bn(part)
        (y * w[4 * rank:4 * (rank + 1)]).sum().backward()
        # NumPy copies, pickled by value: a tensor would travel as a shared-memory handle that dies with this process
        queue.put((rank, *(t.detach().numpy().copy() for t in (y, part.grad, bn.weight.grad, bn.running_mean,
                                                                   bn.running_var)), type(bn).__name__))
    finally:
        dist.destroy_process_group()


def test_two_processes_normalise_with_the_global_batch_statistics():
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted((queue.get(timeout=60) for _ in procs), key=lambda t: t[0])
    got = [(r, *(torch.from_numpy(a) for a in arrays), name) for r, *arrays, name in got]
    for p in procs:
        p.join(30)
    x, w = _batch()
    bn = nn.BatchNorm2d(3).train()
    xx = x.clone().requires_grad_(True)
    y = bn(xx)
    (y * w).sum().backward()
    assert torch.allclose(torch.cat([got[0][1], got[1][1]]), y, atol=1e-5)
    assert torch.allclose(torch.cat([got[0][2], got[1][2]]), xx.grad, atol=1e-5)  # gradients cross processes
    assert torch.allclose(got[0][3] + got[1][3], bn.weight.grad, atol=1e-4)  # DDP then averages these
    for r in range(2):
        assert torch.allclose(got[r][4], bn.running_mean, atol=1e-6)
        assert torch.allclose(got[r][5], bn.running_var, atol=1e-5)  # unbiased, as F.batch_norm
    assert got[0][6] == "GlobalBatchNorm2d"


def test_outside_ddp_and_after_revert_it_is_plain_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    bn = model[1]
    GlobalBatchNorm().apply(model)
    assert model[1] is bn and type(bn).__name__ == "GlobalBatchNorm2d" and isinstance(bn, nn.BatchNorm2d)
    x = torch.randn(4, 1, 6, 6)
    ref = nn.BatchNorm2d(2).train()
    ref.load_state_dict(bn.state_dict())
    assert torch.equal(model(x), ref(model[0](x)))
    GlobalBatchNorm().revert(model)
    assert type(model[1]) is nn.BatchNorm2d

"""Our Adam takes the same steps as torch.optim.Adam with ExponentialLR."""

import torch

from verifriend.bounds.adam import Adam


def test_adam_matches_torch_with_exponential_decay():
    torch.manual_seed(0)
    ours = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True),
            torch.randn(2, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    opt = Adam([(ours[:2], 0.1), (ours[2:], 0.05)], decay=0.98)
    ref = torch.optim.Adam([{"params": theirs[:2], "lr": 0.1},
                            {"params": theirs[2:], "lr": 0.05}])
    sched = torch.optim.lr_scheduler.ExponentialLR(ref, 0.98)
    for step in range(30):
        for ps, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            # the last parameter gets no gradient on odd steps: it must not move then
            loss = (ps[0] ** 3).sum() + ps[1].sin().sum()
            if step % 2 == 0:
                loss = loss + (ps[2] * torch.arange(2.0)).sum()
            loss.backward()
            o.step()
        sched.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

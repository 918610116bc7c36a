"""Contrastive losses over L2-normalised embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Supervised contrastive loss (InfoNCE with every same-label row as a positive).

    With labels = model index (two views per model) it is NT-Xent.

    Shapes:
        z: ``(n, d)``, rows L2-normalised; labels: ``(n,)`` ints.
    """
    n = z.shape[0]
    sim = z @ z.T / tau  # (n, n)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    has_pos = pos.any(dim=1)
    mean_log_pos = log_prob.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp_min(1)
    return -mean_log_pos[has_pos].mean()


def accuracy_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over rows whose target is known (finite); 0 when none is."""
    known = torch.isfinite(target)
    if not known.any():
        return pred.sum() * 0.0
    return F.mse_loss(pred[known], target[known])


def functional_loss(z: torch.Tensor, sim: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the embeddings' cosines and the functions' similarities,
    over the pairs ``same`` marks (distinct models of one interface); 0 when none.

    Shapes:
        z: ``(n, d)``, rows L2-normalised; sim, same: ``(n, n)``.
    """
    if not bool(same.any()):
        return z.sum() * 0.0
    return ((z @ z.T - sim)[same] ** 2).mean()

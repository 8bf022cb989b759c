"""Deep ensemble of small heteroscedastic MLPs (Lakshminarayanan et al. 2017), the surrogate that
BOSHNAS uses: each member predicts a mean and a noise variance, so the spread of the member means
is the model (epistemic) uncertainty and the average predicted noise is the data (aleatoric)
uncertainty. Members are trained with the beta-NLL loss (Seitzer et al. 2022, beta = 0.5), which
keeps the mean fit from stalling where the predicted variance is large."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from surrogates._validation import as_generator, check_fitted, check_X, check_Xy

__all__ = ["DeepEnsemble"]


class DeepEnsemble:
    """``fit(X, y) -> self``; ``predict(X) -> (mean, epistemic + aleatoric variance)``;
    ``predict_decomposed(X) -> (mean, epistemic_var, aleatoric_var)``, all in units of ``y``.

    Parameters
    ----------
    n_members: ensemble size.
    hidden: widths of the hidden layers of each MLP (SiLU activations).
    epochs: full passes over the data (minibatches of ``batch_size``).
    lr, weight_decay: AdamW settings.
    batch_size: minibatch size; the whole set when it is smaller.
    random_state: seed; equal seeds and data give equal predictions on one machine (CPU).
    """

    def __init__(self, *, n_members: int = 5, hidden: Sequence[int] = (64, 64), epochs: int = 300,
                 lr: float = 5e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                 random_state: Any = None) -> None:
        self.n_members = n_members
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.random_state = random_state

    def _net(self, d: int):
        import torch.nn as nn
        layers: list[Any] = []
        width = d
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 2))
        return nn.Sequential(*layers).double()

    def fit(self, X: Any, y: Any) -> "DeepEnsemble":
        import torch
        import torch.nn.functional as F

        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {self.n_members}")
        X, y = check_Xy(X, y, min_samples=2)
        n, d = X.shape
        rng = as_generator(self.random_state)
        self.x_mean_ = X.mean(0)
        self.x_std_ = np.where(X.std(0) > 1e-12, X.std(0), 1.0)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if y.std() > 1e-12 else 1.0
        Xt = torch.from_numpy((X - self.x_mean_) / self.x_std_)
        yt = torch.from_numpy((y - self.y_mean_) / self.y_std_)
        bs = min(self.batch_size, n)
        members = []
        for _ in range(self.n_members):
            seed = int(rng.integers(2**31 - 1))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = self._net(d)
                opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
                for _ in range(self.epochs):
                    perm = torch.randperm(n)
                    for start in range(0, n, bs):
                        idx = perm[start:start + bs]
                        out = net(Xt[idx])
                        mu, var = out[:, 0], F.softplus(out[:, 1]) + 1e-6
                        nll = 0.5 * (torch.log(var) + (yt[idx] - mu) ** 2 / var)
                        loss = (nll * var.detach() ** 0.5).mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
            net.eval()
            members.append(net)
        self.members_ = members
        self.n_features_in_ = d
        return self

    def predict_decomposed(self, X: Any):
        import torch
        import torch.nn.functional as F

        check_fitted(self, "members_")
        X = check_X(X, self.n_features_in_)
        Xt = torch.from_numpy((X - self.x_mean_) / self.x_std_)
        with torch.no_grad():
            outs = [m(Xt) for m in self.members_]
        mus = np.stack([o[:, 0].numpy() for o in outs])
        vars_ = np.stack([(F.softplus(o[:, 1]) + 1e-6).numpy() for o in outs])
        mean = mus.mean(0) * self.y_std_ + self.y_mean_
        epistemic = mus.var(0) * self.y_std_ ** 2
        aleatoric = vars_.mean(0) * self.y_std_ ** 2
        return mean, np.maximum(epistemic, 1e-12), aleatoric

    def predict(self, X: Any):
        mean, epi, ale = self.predict_decomposed(X)
        return mean, epi + ale

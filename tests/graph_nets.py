import math

import numpy as np
import torch
import torch.nn as nn


class ResMLP(nn.Module):
    """tiny-diffusion style: sinusoidal embedding (sin then cos), concat, residual blocks."""

    def __init__(self, d=2, h=64, emb=16, blocks=3):
        super().__init__()
        self.emb = emb
        self.inp = nn.Linear(d + emb, h)
        self.blocks = nn.ModuleList([nn.Linear(h, h) for _ in range(blocks)])
        self.act = nn.GELU()
        self.out = nn.Linear(h, d)

    def embed(self, t):
        t = t * 25.0
        half = self.emb // 2
        e = torch.log(torch.Tensor([10000.0])) / (half - 1)
        e = torch.exp(-e * torch.arange(half))
        e = t.unsqueeze(-1) * e.unsqueeze(0)
        return torch.cat((torch.sin(e), torch.cos(e)), dim=-1)

    def forward(self, x, sigma):
        h = self.inp(torch.cat([x, self.embed(torch.log(sigma))], dim=-1))
        for b in self.blocks:
            h = h + self.act(b(h))
        return self.out(h)


class Fourier(nn.Module):
    """score_sde: GaussianFourierProjection of log sigma, added after projection, output / sigma."""

    def __init__(self, d=2, h=64, e=32, scale=16.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(e // 2) * scale, requires_grad=False)
        self.proj = nn.Linear(e, h)
        self.l1 = nn.Linear(d, h)
        self.l2 = nn.Linear(h, h)
        self.l3 = nn.Linear(h, d)

    def forward(self, x, sigma):
        s = torch.log(sigma)
        xp = s[:, None] * self.W[None, :] * 2 * np.pi
        emb = torch.cat([torch.sin(xp), torch.cos(xp)], dim=-1)
        h = torch.nn.functional.silu(self.l1(x) + self.proj(emb))
        h = torch.nn.functional.silu(self.l2(h))
        return self.l3(h) / sigma[:, None]


class EDM(nn.Module):
    def __init__(self, d=2, h=64, sd=0.5):
        super().__init__()
        self.sd = sd
        self.F = nn.Sequential(
            nn.Linear(d + 1, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d)
        )

    def forward(self, x, sigma):
        sigma = sigma.reshape(-1, 1)
        c_skip = self.sd**2 / (sigma**2 + self.sd**2)
        c_out = sigma * self.sd / (sigma**2 + self.sd**2).sqrt()
        c_in = 1 / (self.sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        F_x = self.F(torch.cat([c_in * x, c_noise], dim=1))
        return c_skip * x + c_out * F_x


class Wrapped(nn.Module):
    def __init__(self, d=2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, d))

    def forward(self, x):
        return self.net(x)


def diffusers_emb(
    timesteps, dim, flip_sin_to_cos=False, downscale_freq_shift=1, scale=1, max_period=10000
):
    half_dim = dim // 2
    exponent = -math.log(max_period) * torch.arange(
        start=0, end=half_dim, dtype=torch.float32, device=timesteps.device
    )
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None].float() * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


class Diffusers(nn.Module):
    def __init__(self, d=3, h=48, e=15):
        super().__init__()
        self.e = e
        self.t1 = nn.Linear(e, h)
        self.t2 = nn.Linear(h, h)
        self.l1 = nn.Linear(d, h)
        self.ln = nn.LayerNorm(h)
        self.l2 = nn.Linear(h, d)

    def forward(self, x, sigma):
        t = diffusers_emb(sigma.log() * 250, self.e, flip_sin_to_cos=True, downscale_freq_shift=0)
        temb = self.t2(torch.nn.functional.silu(self.t1(t)))
        h = self.ln(self.l1(x) + temb)
        return self.l2(torch.nn.functional.silu(h))

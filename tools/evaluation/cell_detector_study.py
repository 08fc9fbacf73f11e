#!/usr/bin/env python3
"""Offline study: does a finer detector find the evaluation's 4x4 and 6x6 patches better than the service's token kNN
score, at the same share of clean images flagged?

The embedded model's stem is copied into PyTorch from its model.onnx. Three finer scores: the stem's 2x2-pixel cells
(its first convolution, 14x14 cells of 32 channels), raw 2x2-pixel cells, and a token's own 16 raw pixels. Each is the
mean distance to the 3 nearest of 8,192 cells drawn from calibration images 0-399; a token takes its cells' maximum.
Thresholds: per-position 99% quantiles on calibration images 400-499 for their shape, scaled so that tune-500's clean
images are flagged as often as by the service's shipped thresholds. Patches: the very per-image patches `strapvit
evaluate` made on tune-500 (its --patch-cache files for the embedded model, 100 steps, seed 0).

    /usr/bin/python3 tools/evaluation/cell_detector_study.py <patch-cache folder>
"""
import sys
import torch
from detector_study import K, calib, knn, patched, report, scale_to, stem, thr, token_scores, tune
CACHE=sys.argv[1]
# cell features: 14x14 cells of 32; token (i,j) has cells (2i..2i+1, 2j..2j+1)
def cells(x,kind):
    if kind=='stem': h,_=stem(x); return h.permute(0,2,3,1)  # N,14,14,32
    if kind=='pix2': return x.reshape(-1,14,2,14,2).permute(0,1,3,2,4).reshape(-1,14,14,4)
    if kind=='pix4': # the token's own 16 pixels as one cell on a 7x7 grid
        return x.reshape(-1,7,4,7,4).permute(0,1,3,2,4).reshape(-1,7,7,16)
def cell_bank(kind,n_bank=8192,seed=0):
    f=cells(calib[:400],kind); f=f.reshape(-1,f.shape[-1])
    g=torch.Generator().manual_seed(seed); return f[torch.randperm(len(f),generator=g)[:n_bank]]
def cell_token_scores(x,kind,bank):
    f=cells(x,kind); n,h,w,c=f.shape
    s=knn(f.reshape(-1,c),bank,K,4096).reshape(n,h,w)
    if h==14: s=s.reshape(n,7,2,7,2).amax(dim=(2,4))
    return s.reshape(n,49)
# Every score's thresholds: per-position 99% quantiles of calib images 400-499 (in no cell bank here) for their shape,
# scaled so that tune-500's clean images are flagged as often as by the service's shipped thresholds (matched rate).
ref=calib[400:]
pats={s:patched(CACHE,s) for s in (4,6)}
tok_c=token_scores(tune,4096)/thr[None,1:]
tok_p={s:token_scores(px,4096)/thr[None,1:] for s,(px,_) in pats.items()}
rate=(tok_c>1).any(1).float().mean().item()
report('token kNN (the service, shipped thresholds)', tok_c, {s:(tok_p[s],pats[s][1]) for s in pats})
for kind in ('stem','pix2','pix4'):
    bank=cell_bank(kind)
    shape=torch.quantile(cell_token_scores(ref,kind,bank),0.99,dim=0)
    c=cell_token_scores(tune,kind,bank)/shape
    p={s:cell_token_scores(px,kind,bank)/shape for s,(px,_) in pats.items()}
    c,p=scale_to(c,p,rate)
    report(f'cells {kind}', c, {s:(p[s],pats[s][1]) for s in pats})
    mc,mp=scale_to(torch.maximum(tok_c,c), {s:torch.maximum(tok_p[s],p[s]) for s in pats}, rate)
    report(f'max(token, cells {kind})', mc, {s:(mp[s],pats[s][1]) for s in pats})

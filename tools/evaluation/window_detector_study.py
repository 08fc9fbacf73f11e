#!/usr/bin/env python3
"""Offline study: does a coarser detector find the evaluation's 4x4 and 6x6 patches better than the service's token kNN
score, at the same share of clean images flagged? (cell_detector_study.py asked the same of finer scores.)

The embedded model's stem is copied into PyTorch from its model.onnx. A window of 2x2 tokens (8x8 pixels, 6x6 = 36
places) is scored as one vector: its four token contents (token minus position embedding) side by side, 256 channels,
against a bank of 8,192 windows drawn from calibration images 0-399, the mean distance to the 3 nearest. A token takes
the maximum over the windows that hold it. Variants: the window's 64 raw pixels; a token with the mean of its 8
neighbours beside it (128 channels); the token kNN score divided by its nearest entries' own reach (each one's mean
distance to its 3 nearest other entries: a local-density ratio, as the local outlier factor takes it). A window
score's "top on patch" is understated (its four tokens tie and the first is taken), so read "patch hit" for it. Thresholds: per-place 99% quantiles on calibration images 400-499 for their shape,
scaled so that tune-500's clean images are flagged as often as by the service's shipped thresholds. Patches: the very
per-image patches `strapvit evaluate` made on tune-500 (its --patch-cache files for the embedded model, 100 steps,
seed 0).

    /usr/bin/python3 tools/evaluation/window_detector_study.py <patch-cache folder> [win,pix8,ctx]   (about 20 s)
"""
import sys
import torch
from detector_study import K, V, calib, content, knn, nearest, patched, report, scale_to, thr, token_scores, tune
CACHE=sys.argv[1]
# each bank entry's own reach: its mean distance to its K nearest other entries
REACH=nearest(V,V,K,skip_self=True)[0].mean(1)
def lof_scores(x):
    d,j=nearest(content(x).flatten(0,1),V,K)
    return (d.mean(1)/REACH[j].mean(1)).reshape(len(x),49)
# Features per place: 'win' and 'pix8' on the 6x6 places of 2x2-token windows, 'ctx' on the 7x7 tokens.
def features(x,kind):
    if kind=='win':
        c=content(x).reshape(len(x),7,7,-1)
        return torch.cat([c[:,:-1,:-1],c[:,:-1,1:],c[:,1:,:-1],c[:,1:,1:]],-1)                # N,6,6,256
    if kind=='pix8':
        p=x.reshape(-1,7,4,7,4).permute(0,1,3,2,4)                                          # N,7,7,4,4
        w=torch.cat([torch.cat([p[:,:-1,:-1],p[:,:-1,1:]],-1),torch.cat([p[:,1:,:-1],p[:,1:,1:]],-1)],-2)
        return w.reshape(len(x),6,6,64)
    if kind=='ctx':
        c=content(x).reshape(len(x),7,7,-1).permute(0,3,1,2)                                # N,64,7,7
        s=torch.nn.functional.avg_pool2d(torch.nn.functional.pad(c,(1,1,1,1)),3,1,count_include_pad=False)*9
        n=torch.nn.functional.avg_pool2d(torch.nn.functional.pad(torch.ones_like(c[:,:1]),(1,1,1,1)),3,1)*9
        mean=(s-c)/(n-1)
        return torch.cat([c,mean],1).permute(0,2,3,1)                                        # N,7,7,128
def bank_of(kind,n_bank=8192,seed=0):
    f=features(calib[:400],kind); f=f.reshape(-1,f.shape[-1])
    g=torch.Generator().manual_seed(seed); return f[torch.randperm(len(f),generator=g)[:n_bank]]
def place_scores(x,kind,bank):
    f=features(x,kind); n,h,w,c=f.shape
    return knn(f.reshape(-1,c),bank,K).reshape(n,h,w)
def to_tokens(s):
    # a token takes the maximum over the places (windows) that hold it; token scores (N x 49 or N x 7 x 7) stay as they are
    if s.dim()==2 or s.shape[1]==7: return s.reshape(len(s),49)
    p=torch.nn.functional.pad(s,(1,1,1,1),value=-1e9)[:,None]
    return torch.nn.functional.max_pool2d(p,2,1)[:,0].reshape(len(s),49)
def show(name, c, p):
    report(name, c, {s:(p[s],pats[s][1]) for s in pats}, width=44, coverage=False)
def per_place(fn, name):
    """fn's scores over their per-place 99% quantile on ref, as tokens, scaled to the service's clean flag rate; then
    the same for their maximum with the service's ratios."""
    shape=torch.quantile(fn(ref),0.99,dim=0)
    c=to_tokens(fn(tune)/shape); p={s:to_tokens(fn(px)/shape) for s,(px,_) in pats.items()}
    c,p=scale_to(c,p,rate); show(name, c, p)
    return c,p
def with_token(name, c, p):
    mc,mp=scale_to(torch.maximum(tok_c,c), {s:torch.maximum(tok_p[s],p[s]) for s in pats}, rate)
    show(f'max(token, {name})', mc, mp)
ref=calib[400:]
KINDS=[k for k in ('win','pix8','ctx') if len(sys.argv)<3 or k in sys.argv[2].split(',')]
pats={s:patched(CACHE,s) for s in (4,6)}
tok_c=token_scores(tune)/thr[None,1:]
tok_p={s:token_scores(px)/thr[None,1:] for s,(px,_) in pats.items()}
rate=(tok_c>1).any(1).float().mean().item()
show('token kNN (the service, shipped thresholds)', tok_c, tok_p)
per_place(token_scores,'token kNN, thresholds as the others')
with_token('LOF-like', *per_place(lof_scores,'token kNN / neighbours\' reach (LOF-like)'))
for kind in KINDS:
    bank=bank_of(kind)
    with_token(kind, *per_place(lambda x: place_scores(x,kind,bank), kind))

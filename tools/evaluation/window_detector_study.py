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
import base64, gzip, json, os, sys
import numpy as np, onnx, torch
from onnx import numpy_helper
torch.set_num_threads(2)
R=os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','..')+'/'
CACHE=sys.argv[1]
cal=json.load(open(R+'models/fashion-vit-tiny/defense-calibration.json'))
b=cal['tokens']['bank']; dim=b['dim']
V=torch.tensor(np.frombuffer(base64.b64decode(b['vectors']),dtype='<f4').reshape(-1,dim).copy())
off=torch.tensor(np.array(b['offset'],dtype=np.float32)); K=b['neighbors']
thr=torch.tensor(np.array(cal['tokens']['bankThreshold'],dtype=np.float32))
m=onnx.load(R+'models/fashion-vit-tiny/model.onnx'); W={i.name:torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
def idx(path,n=None):
    raw=gzip.open(path).read(); a=np.frombuffer(raw[16:],dtype=np.uint8).reshape(-1,28,28).astype(np.float32)/255
    return torch.tensor(a[:n] if n else a)
tune=idx(R+'samples/fashion-mnist/tune-500-images-idx3-ubyte.gz')
calib=idx(R+'samples/fashion-mnist/calib-500-images-idx3-ubyte.gz')
def patched(size):
    d=json.load(open(os.path.join(CACHE,f'patched-47f1b5e15ed6d54b-53fc0c8273f60687-500-p{size}-s100-seed0.json')))
    px=torch.tensor(np.frombuffer(base64.b64decode(d['Pixels']),dtype='<f4').reshape(-1,28,28).copy())
    return px,[(p['X'],p['Y'],p['Size']) for p in d['Placements']]
def content(x):
    x=((x-0.286)/0.353)[:,None]
    h=torch.nn.functional.gelu(torch.nn.functional.conv2d(x,W['stem.0.weight'],W['stem.0.bias'],stride=2))
    t=torch.nn.functional.conv2d(h,W['patch_embed.weight'],W['patch_embed.bias'],stride=2).flatten(2).transpose(1,2)
    t=torch.cat([W['cls_token'].expand(len(x),-1,-1),t],1)+W['pos_embed']
    return (t[:,1:]-off[None,1:]).reshape(len(x),7,7,dim)   # N,7,7,64
def knn(q,bank,k,chunk=2048):
    out=[]; bn=(bank**2).sum(1)
    for i in range(0,len(q),chunk):
        qq=q[i:i+chunk]; d2=(qq**2).sum(1)[:,None]-2*qq@bank.T+bn[None]
        out.append(d2.clamp_min(0).topk(k,largest=False).values.sqrt().mean(1))
    return torch.cat(out)
def token_scores(x):
    return knn(content(x).reshape(-1,dim),V,K).reshape(len(x),49)
def knn_idx(q,bank,k,chunk=2048,skip_self=False):
    ds,ix=[],[]; bn=(bank**2).sum(1)
    for i in range(0,len(q),chunk):
        qq=q[i:i+chunk]; d2=(qq**2).sum(1)[:,None]-2*qq@bank.T+bn[None]
        if skip_self: d2[torch.arange(len(qq)),torch.arange(i,i+len(qq))]=float('inf')
        v,j=d2.clamp_min(0).topk(k,largest=False); ds.append(v.sqrt()); ix.append(j)
    return torch.cat(ds),torch.cat(ix)
# each bank entry's own reach: its mean distance to its K nearest other entries
_rd,_ = knn_idx(V,V,K,skip_self=True); REACH=_rd.mean(1)
def lof_scores(x):
    d,j=knn_idx(content(x).reshape(-1,dim),V,K)
    return (d.mean(1)/REACH[j].mean(1)).reshape(len(x),49)
# Features per place: 'win' and 'pix8' on the 6x6 places of 2x2-token windows, 'ctx' on the 7x7 tokens.
def features(x,kind):
    if kind=='win':
        c=content(x); return torch.cat([c[:,:-1,:-1],c[:,:-1,1:],c[:,1:,:-1],c[:,1:,1:]],-1)   # N,6,6,256
    if kind=='pix8':
        p=x.reshape(-1,7,4,7,4).permute(0,1,3,2,4)                                          # N,7,7,4,4
        w=torch.cat([torch.cat([p[:,:-1,:-1],p[:,:-1,1:]],-1),torch.cat([p[:,1:,:-1],p[:,1:,1:]],-1)],-2)
        return w.reshape(len(x),6,6,64)
    if kind=='ctx':
        c=content(x).permute(0,3,1,2)                                                        # N,64,7,7
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
    # a token takes the maximum over the places (windows) that hold it
    if s.shape[1]==7: return s.reshape(len(s),49)
    p=torch.nn.functional.pad(s,(1,1,1,1),value=-1e9)[:,None]
    return torch.nn.functional.max_pool2d(p,2,1)[:,0].reshape(len(s),49)
def patch_tokens(pl):
    X,Y,S=pl; return [r*7+c for r in range(7) for c in range(7) if not (c*4>=X+S or c*4+4<=X or r*4>=Y+S or r*4+4<=Y)]
def report(name, clean_ratio, pat):
    fl=(clean_ratio>1).any(1).float().mean().item()
    line=f'{name:44s} clean flagged {fl*100:5.1f}%'
    for size,(ratio,pls) in pat.items():
        top=ratio.argmax(1); ontop=np.mean([int(top[i]) in patch_tokens(pls[i]) for i in range(len(pls))])
        hit=np.mean([bool((ratio[i,patch_tokens(pls[i])]>1).any()) for i in range(len(pls))])
        line+=f' | {size}x{size}: top on patch {ontop*100:5.1f}%, patch hit {hit*100:5.1f}%'
    print(line, flush=True)
def scale_to(c, p, rate):
    lo,hi=0.05,20.0
    for _ in range(60):
        mid=(lo+hi)/2; f=(c>mid).any(1).float().mean().item(); lo,hi=(mid,hi) if f>rate else (lo,mid)
    return c/hi, {s:v/hi for s,v in p.items()}
ref=calib[400:]
KINDS=[k for k in ('win','pix8','ctx') if len(sys.argv)<3 or k in sys.argv[2].split(',')]
pats={s:patched(s) for s in (4,6)}
tok_c=token_scores(tune)/thr[None,1:]
tok_p={s:token_scores(px)/thr[None,1:] for s,(px,_) in pats.items()}
rate=(tok_c>1).any(1).float().mean().item()
report('token kNN (the service, shipped thresholds)', tok_c, {s:(tok_p[s],pats[s][1]) for s in pats})
def per_position(fn, name):
    shape=torch.quantile(fn(ref),0.99,dim=0)
    c=fn(tune)/shape; p={s:fn(px)/shape for s,(px,_) in pats.items()}
    c,p=scale_to(c,p,rate); report(name, c, {s:(p[s],pats[s][1]) for s in pats}); return c,p
per_position(token_scores,'token kNN, thresholds as the others')
lc,lp=per_position(lof_scores,'token kNN / neighbours\' reach (LOF-like)')
mc,mp=scale_to(torch.maximum(tok_c,lc), {s:torch.maximum(tok_p[s],lp[s]) for s in pats}, rate)
report('max(token, LOF-like)', mc, {s:(mp[s],pats[s][1]) for s in pats})
for kind in KINDS:
    bank=bank_of(kind)
    shape=torch.quantile(place_scores(ref,kind,bank).flatten(1),0.99,dim=0).reshape(1,*place_scores(ref[:1],kind,bank).shape[1:])
    c=to_tokens(place_scores(tune,kind,bank)/shape)
    p={s:to_tokens(place_scores(px,kind,bank)/shape) for s,(px,_) in pats.items()}
    c,p=scale_to(c,p,rate)
    report(f'{kind}', c, {s:(p[s],pats[s][1]) for s in pats})
    mc,mp=scale_to(torch.maximum(tok_c,c), {s:torch.maximum(tok_p[s],p[s]) for s in pats}, rate)
    report(f'max(token, {kind})', mc, {s:(mp[s],pats[s][1]) for s in pats})

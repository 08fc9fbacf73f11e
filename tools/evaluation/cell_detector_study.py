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
def stem(x):
    x=((x-0.286)/0.353)[:,None]
    h=torch.nn.functional.gelu(torch.nn.functional.conv2d(x,W['stem.0.weight'],W['stem.0.bias'],stride=2))  # N,32,14,14
    t=torch.nn.functional.conv2d(h,W['patch_embed.weight'],W['patch_embed.bias'],stride=2).flatten(2).transpose(1,2)
    t=torch.cat([W['cls_token'].expand(len(x),-1,-1),t],1)+W['pos_embed']
    return h,t
def knn(q,bank,k,chunk=4096):
    out=[]
    bn=(bank**2).sum(1)
    for i in range(0,len(q),chunk):
        qq=q[i:i+chunk]; d2=(qq**2).sum(1)[:,None]-2*qq@bank.T+bn[None]
        out.append(d2.clamp_min(0).topk(k,largest=False).values.sqrt().mean(1))
    return torch.cat(out)
def token_scores(x):
    _,t=stem(x); c=(t[:,1:]-off[None,1:]).reshape(-1,dim)
    return knn(c,V,K).reshape(len(x),49)
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
    s=knn(f.reshape(-1,c),bank,K).reshape(n,h,w)
    if h==14: s=s.reshape(n,7,2,7,2).amax(dim=(2,4))
    return s.reshape(n,49)
def thresholds(clean_scores, rate=0.30):
    # per-position 99% quantile, scaled so that `rate` of these images have a token over
    q=torch.quantile(clean_scores,0.99,dim=0)
    lo,hi=0.1,10.0
    for _ in range(60):
        mid=(lo+hi)/2; f=(clean_scores>q*mid).any(1).float().mean().item()
        lo,hi=(mid,hi) if f>rate else (lo,mid)
    return q*hi
def patch_tokens(pl):
    X,Y,S=pl; return [r*7+c for r in range(7) for c in range(7) if not (c*4>=X+S or c*4+4<=X or r*4>=Y+S or r*4+4<=Y)]
def report(name, clean_ratio, pat):
    fl=(clean_ratio>1).any(1).float().mean().item()
    line=f'{name:38s} clean flagged {fl*100:5.1f}%'
    for size,(ratio,pls) in pat.items():
        top=ratio.argmax(1); ontop=np.mean([int(top[i]) in patch_tokens(pls[i]) for i in range(len(pls))])
        hit=np.mean([bool((ratio[i,patch_tokens(pls[i])]>1).any()) for i in range(len(pls))])
        cov=np.mean([float((ratio[i,patch_tokens(pls[i])]>1).float().mean()) for i in range(len(pls))])
        line+=f' | {size}x{size}: top on patch {ontop*100:5.1f}%, patch hit {hit*100:5.1f}%, patch tokens over {cov*100:5.1f}%'
    print(line, flush=True)
# Every score's thresholds: per-position 99% quantiles of calib images 400-499 (in no cell bank here) for their shape,
# scaled so that tune-500's clean images are flagged as often as by the service's shipped thresholds (matched rate).
ref=calib[400:]
pats={s:patched(s) for s in (4,6)}
tok_c=token_scores(tune)/thr[None,1:]
tok_p={s:token_scores(px)/thr[None,1:] for s,(px,_) in pats.items()}
rate=(tok_c>1).any(1).float().mean().item()
report('token kNN (the service, shipped thresholds)', tok_c, {s:(tok_p[s],pats[s][1]) for s in pats})
def scale_to(c, p, rate):
    lo,hi=0.05,20.0
    for _ in range(60):
        mid=(lo+hi)/2; f=(c>mid).any(1).float().mean().item(); lo,hi=(mid,hi) if f>rate else (lo,mid)
    return c/hi, {s:v/hi for s,v in p.items()}
for kind in ('stem','pix2','pix4'):
    bank=cell_bank(kind)
    shape=torch.quantile(cell_token_scores(ref,kind,bank),0.99,dim=0)
    c=cell_token_scores(tune,kind,bank)/shape
    p={s:cell_token_scores(px,kind,bank)/shape for s,(px,_) in pats.items()}
    c,p=scale_to(c,p,rate)
    report(f'cells {kind}', c, {s:(p[s],pats[s][1]) for s in pats})
    mc,mp=scale_to(torch.maximum(tok_c,c), {s:torch.maximum(tok_p[s],p[s]) for s in pats}, rate)
    report(f'max(token, cells {kind})', mc, {s:(mp[s],pats[s][1]) for s in pats})

"""What the offline detector studies (cell_detector_study.py, window_detector_study.py) share: the embedded model's
stem and token bank copied into PyTorch, the shipped sample images, `strapvit evaluate`'s cached per-image patches of
tune-500, the kNN search, and how a score is scaled to a clean flag rate and reported.

Loaded on import (the embedded model's model.onnx and defense-calibration.json, tune-500 and calib-500).
"""
import base64, json, os
import numpy as np, onnx, torch
from onnx import numpy_helper
import idx as idxfile
torch.set_num_threads(2)
R=os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','..')+'/'
cal=json.load(open(R+'models/fashion-vit-tiny/defense-calibration.json'))
b=cal['tokens']['bank']; dim=b['dim']
V=torch.tensor(np.frombuffer(base64.b64decode(b['vectors']),dtype='<f4').reshape(-1,dim).copy())
off=torch.tensor(np.array(b['offset'],dtype=np.float32)); K=b['neighbors']
thr=torch.tensor(np.array(cal['tokens']['bankThreshold'],dtype=np.float32))
m=onnx.load(R+'models/fashion-vit-tiny/model.onnx'); W={i.name:torch.tensor(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
def images(path):
    raw,shape=idxfile.read(path,idxfile.IMAGES)
    return torch.tensor(np.frombuffer(raw[16:],dtype=np.uint8).reshape(shape).astype(np.float32)/255)
tune=images(R+'samples/fashion-mnist/tune-500-images-idx3-ubyte.gz')
calib=images(R+'samples/fashion-mnist/calib-500-images-idx3-ubyte.gz')
def patched(cache,size,model='47f1b5e15ed6d54b'):
    """tune-500 with its per-image patches of `size` pixels, as `strapvit evaluate --patch-cache` stored them, and their
    (x, y, size); `model` is the first 16 hex digits of the model.onnx's SHA-256 (the embedded model's by default)."""
    d=json.load(open(os.path.join(cache,f'patched-{model}-53fc0c8273f60687-500-p{size}-s100-seed0.json')))
    px=torch.tensor(np.frombuffer(base64.b64decode(d['Pixels']),dtype='<f4').reshape(-1,28,28).copy())
    return px,[(p['X'],p['Y'],p['Size']) for p in d['Placements']]
def stem(x):
    """The stem's 2x2-pixel cells (N, 32, 14, 14) and the tokens (N, 50, 64), position embedding added."""
    x=((x-0.286)/0.353)[:,None]
    h=torch.nn.functional.gelu(torch.nn.functional.conv2d(x,W['stem.0.weight'],W['stem.0.bias'],stride=2))
    t=torch.nn.functional.conv2d(h,W['patch_embed.weight'],W['patch_embed.bias'],stride=2).flatten(2).transpose(1,2)
    t=torch.cat([W['cls_token'].expand(len(x),-1,-1),t],1)+W['pos_embed']
    return h,t
def content(x):
    """The 49 patch tokens' contents (each minus its position's offset, as the bank holds them), N x 49 x 64."""
    return stem(x)[1][:,1:]-off[None,1:]
def nearest(q,bank,k,chunk=2048,skip_self=False):
    """Distances to the k nearest rows of bank and their indices; skip_self when q is bank itself."""
    ds,ix=[],[]; bn=(bank**2).sum(1)
    for i in range(0,len(q),chunk):
        qq=q[i:i+chunk]; d2=(qq**2).sum(1)[:,None]-2*qq@bank.T+bn[None]
        if skip_self: d2[torch.arange(len(qq)),torch.arange(i,i+len(qq))]=float('inf')
        v,j=d2.clamp_min(0).topk(k,largest=False); ds.append(v.sqrt()); ix.append(j)
    return torch.cat(ds),torch.cat(ix)
def knn(q,bank,k,chunk=2048):
    """The kNN score: the mean distance to the k nearest rows of bank."""
    return nearest(q,bank,k,chunk)[0].mean(1)
def token_scores(x,chunk=2048):
    """The service's score of each patch token against the shipped bank, N x 49."""
    return knn(content(x).reshape(-1,dim),V,K,chunk).reshape(len(x),49)
def patch_tokens(pl,grid=7,side=4):
    """The tokens (row-major on a grid x grid of side-pixel tokens) that patch placement pl overlaps."""
    X,Y,S=pl; return [r*grid+c for r in range(grid) for c in range(grid) if not (c*side>=X+S or c*side+side<=X or r*side>=Y+S or r*side+side<=Y)]
def report(name, clean_ratio, pat, width=38, coverage=True, grid=7, side=4):
    """One line: clean images flagged (a token's ratio over 1), and per patch size how often the top token lies on the
    patch, how often a patch token is over, and (coverage) the mean share of patch tokens over."""
    fl=(clean_ratio>1).any(1).float().mean().item()
    line=f'{name:{width}s} clean flagged {fl*100:5.1f}%'
    for size,(ratio,pls) in pat.items():
        top=ratio.argmax(1); ontop=np.mean([int(top[i]) in patch_tokens(pls[i],grid,side) for i in range(len(pls))])
        hit=np.mean([bool((ratio[i,patch_tokens(pls[i],grid,side)]>1).any()) for i in range(len(pls))])
        line+=f' | {size}x{size}: top on patch {ontop*100:5.1f}%, patch hit {hit*100:5.1f}%'
        if coverage:
            cov=np.mean([float((ratio[i,patch_tokens(pls[i],grid,side)]>1).float().mean()) for i in range(len(pls))])
            line+=f', patch tokens over {cov*100:5.1f}%'
    print(line, flush=True)
def scale_to(c, p, rate):
    """Clean ratios c and patched ratios p scaled by one factor so that `rate` of the clean images have a token over 1."""
    lo,hi=0.05,20.0
    for _ in range(60):
        mid=(lo+hi)/2; f=(c>mid).any(1).float().mean().item(); lo,hi=(mid,hi) if f>rate else (lo,mid)
    return c/hi, {s:v/hi for s,v in p.items()}

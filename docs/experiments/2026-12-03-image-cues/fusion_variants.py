# Record of the 2026-12-03 experiment (see README.md beside it). It ran against a working-tree
# module model_export/fusion.py (cue cache, loaders, fusion fit) that was not kept when the cue
# stage was dropped, so it does not run as it stands; the numbers it printed are in README.md.
import numpy as np, warnings
warnings.filterwarnings('ignore')
from pathlib import Path
from sklearn.metrics import roc_auc_score
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from model_export.fusion import *
photos = load_rated_photos(Path('../shared/data'))
inp = compute_inputs(photos, Path('resources/models/default-int8.onnx'), Path('/tmp/work/cache'))
y = np.array([p.label for p in photos]); st=np.array([p.rated_set for p in photos]); g=source_groups(photos)
def feats(kind, mu, sd, idx):
    z=np.clip((inp.cues[idx]-mu)/sd,-6,6); nl=np.clip(np.log(np.clip(inp.net_score[idx],1e-6,1-1e-6)/(1-np.clip(inp.net_score[idx],1e-6,1-1e-6))),-9,9)[:,None]
    rl=np.clip(np.log(np.clip(inp.net_reasons[idx],1e-6,1-1e-6)/(1-np.clip(inp.net_reasons[idx],1e-6,1-1e-6))),-9,9)
    parts={'net':[nl],'netr':[nl,rl],'z':[nl,z],'zr':[nl,rl,z],'h':[nl,z,np.maximum(z-1,0),np.maximum(-z-1,0)],'hr':[nl,rl,z,np.maximum(z-1,0),np.maximum(-z-1,0)]}[kind]
    return np.concatenate(parts,1)
def cv(kind,C,cw):
    s=np.zeros(len(y))
    for tr,te in StratifiedGroupKFold(5,shuffle=True,random_state=0).split(y,y,g):
        mu=inp.cues[tr].mean(0); sd=inp.cues[tr].std(0)+1e-6
        m=LogisticRegression(C=C,class_weight=cw,max_iter=5000).fit(feats(kind,mu,sd,tr),y[tr])
        s[te]=m.decision_function(feats(kind,mu,sd,te))
    return s
def direction(kind,C,cw,a,b):
    tr=np.where(st==a)[0]; te=np.where(st==b)[0]
    mu=inp.cues[tr].mean(0); sd=inp.cues[tr].std(0)+1e-6
    m=LogisticRegression(C=C,class_weight=cw,max_iter=5000).fit(feats(kind,mu,sd,tr),y[tr])
    return roc_auc_score(y[te], m.decision_function(feats(kind,mu,sd,te)))
for kind in ['net','netr','z','zr','h','hr']:
  for C in [0.01,0.1,1]:
    for cw in [None,'balanced']:
      s=cv(kind,C,cw)
      print(f"{kind:5s} C={C:<5} cw={str(cw):8s} all {roc_auc_score(y,s):.3f} rated {roc_auc_score(y[st=='rated'],s[st=='rated']):.3f} rated2 {roc_auc_score(y[st=='rated2'],s[st=='rated2']):.3f} | r->r2 {direction(kind,C,cw,'rated','rated2'):.3f} r2->r {direction(kind,C,cw,'rated2','rated'):.3f}")

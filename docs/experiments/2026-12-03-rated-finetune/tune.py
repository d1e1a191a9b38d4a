# The hyperparameter comparison of README.md beside it (2026-12-03). Needs the descriptor bags of
# the 440 rated photos in /tmp/work/desc_int8.npz (np.savez of rated_finetune.rated_bags'
# descriptors, in load_rated_photos order); run from the repository root. A record, not a test.
import numpy as np, warnings, onnx, time, torch, sys
warnings.filterwarnings('ignore')
torch.set_num_threads(2)
from pathlib import Path
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from model_export.data.rated import load_rated_photos, source_groups
from model_export.training.rated_finetune import *
from desktop_app.core.model_meta import REASON_NAMES_V1
photos = load_rated_photos(Path('../shared/data'))
y = np.array([p.label for p in photos]); st=np.array([p.rated_set for p in photos]); g=source_groups(photos)
fault=np.array([p.fault for p in photos])
model = onnx.load('resources/models/default-int8.onnx')
head = head_from_onnx(model)
z=np.load('/tmp/work/desc_int8.npz'); D=[z[f'arr_{i}'] for i in range(len(photos))]
from desktop_app.core.inference import QualityEngine
from desktop_app.core.image_io import load_rgb
from desktop_app.core.tiling import patch_positions
eng=QualityEngine('resources/models/default-int8.onnx', providers='cpu')
bags=[]
for p,d in zip(photos,D):
    im=load_rgb(p.path); _,lay=eng.prepare(im,'capture'); bags.append((d, patch_positions(lay).astype(np.float32)))
s0,_=predict(head,bags); engine_scores=np.array([eng.score(load_rgb(p.path)).score for p in photos])
print('reproduce max diff', np.abs(s0-engine_scores).max())
RN=REASON_NAMES_V1
def run(cfg):
    t=time.time(); s=np.zeros(len(y))
    for tr,te in StratifiedGroupKFold(5,shuffle=True,random_state=0).split(y,y,g):
        h=fine_tune(head,[photos[i] for i in tr],[bags[i] for i in tr],RN,cfg); s[te]=predict(h,[bags[i] for i in te])[0]
    d=[]
    for a,b in [('rated','rated2'),('rated2','rated')]:
        tr=np.where(st==a)[0]; te=np.where(st==b)[0]
        h=fine_tune(head,[photos[i] for i in tr],[bags[i] for i in tr],RN,cfg); d.append(roc_auc_score(y[te], predict(h,[bags[i] for i in te])[0]))
    r2=st=='rated2'
    fam={f: roc_auc_score(y[(fault==f)|((fault=='none')&r2)], s[(fault==f)|((fault=='none')&r2)]) for f in ['messenger','sheen','cut_off']}
    print(f"{cfg}: all {roc_auc_score(y,s):.3f} rated {roc_auc_score(y[st=='rated'],s[st=='rated']):.3f} rated2 {roc_auc_score(y[r2],s[r2]):.3f} | r->r2 {d[0]:.3f} r2->r {d[1]:.3f} | "+' '.join(f'{a} {b:.2f}' for a,b in fam.items())+f" {time.time()-t:.0f}s", flush=True)
for cfg in [FineTuneConfig(epochs=10,lr=1e-4,l2sp=1e-2), FineTuneConfig(epochs=30,lr=1e-4,l2sp=1e-2), FineTuneConfig(epochs=30,lr=3e-4,l2sp=1e-3), FineTuneConfig(epochs=60,lr=1e-4,l2sp=1e-3)]:
    run(cfg)

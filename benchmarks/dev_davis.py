"""Quick dev loop: IoU of the classical engine on the DAVIS dev sequences (frame 0 reference)."""
import sys, time
from pathlib import Path
import cv2, numpy as np
from napari_iconmat.core import make_engine, make_prompt, propagate

root = Path("/work/shared/data/davis2016-dev")
seqs = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else sorted(p.name for p in root.iterdir() if p.is_dir())
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
params = eval(sys.argv[3]) if len(sys.argv) > 3 else {}
res = {}
for s in seqs:
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted((root / s / "frames").glob("*.jpg"))[:n]]
    masks = [cv2.imread(str(p), 0) > 127 for p in sorted((root / s / "masks").glob("*.png"))[:n]]
    eng = make_engine("classical", **params)
    q = eng.encode_reference(frames[0], make_prompt(masks[0]))
    t = time.time(); ious = []
    for i, m in propagate(frames, q, eng, reference_index=0):
        if i == 0: continue
        p = m.alpha > 0.5; g = masks[i]
        ious.append((p & g).sum() / max((p | g).sum(), 1))
    dt = time.time() - t
    res[s] = np.mean(ious)
    print(f"{s:16s} IoU {np.mean(ious):.3f} min {np.min(ious):.3f} last {ious[-1]:.3f}  {len(ious)/dt:.2f} fps", flush=True)
print("mean", np.mean(list(res.values())))

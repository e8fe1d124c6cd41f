"""Fingerprints of short training runs, for checking that a change keeps the same bits (issue 14's
"96 trajectories byte-identical"). For each of iris, wine, breast cancer and digits (hidden (30,),
weight decay 1e-4, 15 epochs) x lbfgs, cg, newton_cg (Gauss-Newton and Hessian curvature), adam,
sgd (batch 32) x float32, float64 x relu, tanh: a SHA-256 of the final parameters and of every
epoch's record but its seconds. Run it once per source tree and compare the files:

    PYTHONPATH=OLD python benchmarks/trajectories.py old.json
    PYTHONPATH=$PWD python benchmarks/trajectories.py new.json
    cmp old.json new.json

nnclf is imported from PYTHONPATH before beyond_bench (whose data loading is used), which puts
this checkout first on sys.path: the modules already loaded are the tree under test.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    import nnclf.trainer  # noqa: F401  (the tree under test, first)
    from nnclf.engine.curvature import CurvatureProduct
    from nnclf.engine.losses import LOSSES
    from nnclf.engine.network import MLP
    from nnclf.engine.optimizers import OPTIMIZERS
    from nnclf.engine.schedules import SCHEDULES
    from nnclf.trainer import Trainer

    print(f"nnclf from {Path(nnclf.trainer.__file__).parent}", flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import beyond_bench as bb  # its data loading only

    methods = [("lbfgs", {}), ("cg", {}), ("newton_cg", {"curvature": "gauss_newton"}), ("newton_cg", {"curvature": "hessian"}),
               ("adam", {}), ("sgd", {})]
    out = {}
    for data in ("iris", "wine", "breast_cancer", "digits"):
        x, _, y, _, k = bb.load(data, 0)
        for name, hyper in methods:
            full_batch = name in ("lbfgs", "cg", "newton_cg")
            for dtype in ("float32", "float64"):
                for activation in ("relu", "tanh"):
                    loss = LOSSES.get("cross_entropy")(k)
                    net = MLP([x.shape[1], 30, loss.n_outputs], activation, dtype=dtype)
                    rng = np.random.default_rng(3)
                    net.initialize("auto", rng, full_batch=full_batch)
                    opt = OPTIMIZERS.get(name)(net.params.size, dtype, net.weight_mask(), **hyper)
                    trainer = Trainer(net, loss, opt, SCHEDULES.get("constant")(1e-2, 15), epochs=15,
                                      batch_size=None if full_batch else 32, rng=rng, weight_decay=1e-4, monitor="train_loss")
                    if getattr(opt, "needs_curvature", False):
                        trainer.curvature_factory = lambda *a, opt=opt: CurvatureProduct(*a, kind=opt.curvature)
                    trainer.fit(x.astype(dtype), y)
                    digest = hashlib.sha256(net.params.tobytes())
                    for record in trainer.history:
                        digest.update(repr({key: v for key, v in record.items() if key != "seconds"}).encode())
                    out[f"{data}/{name}{hyper.get('curvature', '')}/{dtype}/{activation}"] = digest.hexdigest()
    Path(sys.argv[1]).write_text(json.dumps(out, indent=0, sort_keys=True))
    print(f"{len(out)} trajectories -> {sys.argv[1]}")


if __name__ == "__main__":
    main()

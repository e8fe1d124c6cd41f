"""``nnclf gradcheck``: the configured network's backprop against finite differences, on real
training rows (the checks themselves are the engine's: nnclf/engine/gradcheck.py)."""

from __future__ import annotations

from .errors import NnclfError, Warn
from .seeds import model_rng


def gradient_check(config_path, overrides, samples: int, warn: Warn = lambda m: None, curvature: bool = False):
    """Backprop vs finite differences on ``samples`` training rows of the configured network;
    with ``curvature``, also the Hessian- and Gauss-Newton-vector products newton_cg uses."""
    from .build import build_network, build_task_loss
    from .config import load_config
    from .data.dataset import prepare
    from .engine.fullbatch import FULL_BATCH
    from .engine.gradcheck import check_gradients

    cfg = load_config(config_path, overrides)
    prepared = prepare(cfg.data, cfg.seed, "float64", warn, cfg.task)
    train = prepared.train
    x, y = train.x[:samples], train.y[:samples]
    loss = build_task_loss(cfg, prepared)
    net = build_network(cfg, x.shape[1], loss)
    net.initialize(cfg.model.init, model_rng(cfg.seed), full_batch=cfg.optimizer.name in FULL_BATCH)
    note = "dropout is off during the check (it makes the loss random)" if cfg.model.dropout > 0 else ""
    checks = check_gradients(net, loss, x, y, cfg.loss.weight_decay)
    if curvature:
        from .engine.gradcheck import check_curvature

        try:
            checks += check_curvature(net, loss, x, y, cfg.loss.weight_decay, seed=cfg.seed)
        except ValueError as e:
            raise NnclfError(f"--curvature: {e}") from None
    return checks, note

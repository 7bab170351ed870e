"""The compiled solvers of ``causaljax.scm.fit``: two XLA programs, each fitting a fixed-size
chunk of U tasks at once (vmap over tasks). The caller feeds every chunk with the same shapes,
so a fit compiles each program once (its shapes depend only on the table and the DAGs' largest
parent set, not on how many tasks a family gets).

A *task* predicts one column from the input slots of its parents. Shared inputs:

    zs_nxs      f32[n, S]   standardized inputs of all rows
    weight_n    f32[n]      0/1 row weights (the training split, or all rows)

Per-task inputs (leading axis U):

    slots_uxp   int32[U, P]  input slots of the task's parents, padded with slot 0
    valid_uxp   f32[U, P]    1 on real slots (padding slots read 0)
    target_uxn  f32[U, n]    standardized value (numeric task) or level code (categorical)
    is_cat_u    bool[U]
    level_uxc   bool[U, C]   output channels that are levels (all True for numeric tasks)

Loss per row: half the squared error of output channel 0 (numeric tasks) or the log-loss of
the softmax over the level channels (categorical tasks); weighted mean over rows plus
``l2 / 2`` times the squared weights (never the biases).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

NEWTON_DAMPING = (1.0, 0.5, 0.25, 0.125, 0.0)  # step sizes tried per Newton step (0: stay)


def _row_loss(out_nxc, target_n, is_cat, level_c):
    """f32[n]: log-loss over the level channels (categorical) or half squared error."""
    logp = jax.nn.log_softmax(jnp.where(level_c[None, :], out_nxc, -jnp.inf), axis=-1)
    code = jnp.clip(target_n.astype(jnp.int32), 0, out_nxc.shape[1] - 1)
    log_loss = -jnp.take_along_axis(logp, code[:, None], axis=1)[:, 0]
    return jnp.where(is_cat, log_loss, 0.5 * (out_nxc[:, 0] - target_n) ** 2)


def _inputs(zs_nxs, slots_p, valid_p):
    """f32[n, P]: the task's parent slots (padding slots read 0)."""
    return zs_nxs[:, slots_p] * valid_p[None, :]


def _grad_hess(x_nxq, w_n, theta_qxc, target_n, is_cat, level_c, penalty_q):
    """Gradient f32[Q, C] and Hessian f32[Q*C, Q*C] of the GLM objective (row weights
    ``w_n`` sum to 1): residual r and curvature K per row are p - onehot(y), diag(p) - p pᵀ
    (softmax) or (out_0 - y) e_0, e_0 e_0ᵀ (squared error)."""
    out_nxc = x_nxq @ theta_qxc
    Q, C = theta_qxc.shape
    p_nxc = jax.nn.softmax(jnp.where(level_c[None, :], out_nxc, -jnp.inf), axis=-1)
    onehot_nxc = jax.nn.one_hot(target_n.astype(jnp.int32), C)
    e0_c = jnp.arange(C) == 0
    resid_nxc = jnp.where(is_cat, p_nxc - onehot_nxc, (out_nxc[:, :1] - target_n[:, None]) * e0_c[None, :])
    curv_nxcxc = jnp.where(is_cat, jax.vmap(jnp.diag)(p_nxc) - p_nxc[:, :, None] * p_nxc[:, None],
                           e0_c[:, None] & e0_c[None, :])
    grad = x_nxq.T @ (w_n[:, None] * resid_nxc) + penalty_q[:, None] * theta_qxc
    hess = jnp.einsum("na,nb,ncd->acbd", x_nxq * w_n[:, None], x_nxq, curv_nxcxc)
    diag = jnp.repeat(penalty_q, C) + 1e-6  # jitter: the softmax is shift-invariant
    return grad, hess.reshape(Q * C, Q * C) + jnp.diag(diag)


@functools.partial(jax.jit, static_argnames="n_channels")
def newton_glm(zs_nxs, weight_n, slots_uxp, valid_uxp, target_uxn, is_cat_u, level_uxc, l2_u,
               steps, *, n_channels: int):
    """Linear models of U tasks by damped Newton: ridge regression (numeric: exact after one
    step) or softmax regression (categorical), ``steps`` iterations from zero (a traced
    count: numeric and categorical chunks share the program). Each step tries the step sizes
    ``NEWTON_DAMPING`` and keeps the best, so the loss never increases. Softmax biases are
    centred over the levels (the optimum is unique up to that shift).
    Returns (w f32[U, P, C], b f32[U, C])."""
    damping = jnp.asarray(NEWTON_DAMPING)
    wsum = weight_n.sum()

    def one(slots_p, valid_p, target_n, is_cat, level_c, l2):
        x_nxq = jnp.concatenate([_inputs(zs_nxs, slots_p, valid_p),
                                 jnp.ones((zs_nxs.shape[0], 1))], axis=1)  # Q = P + 1
        Q = x_nxq.shape[1]
        penalty_q = jnp.where(jnp.arange(Q) < Q - 1, l2, 0.0)  # the bias row is free

        def objective(theta_qxc):
            rows = _row_loss(x_nxq @ theta_qxc, target_n, is_cat, level_c)
            return weight_n @ rows / wsum + 0.5 * jnp.sum(penalty_q[:, None] * theta_qxc ** 2)

        def step(_, theta_qxc):
            grad, hess = _grad_hess(x_nxq, weight_n / wsum, theta_qxc, target_n, is_cat,
                                    level_c, penalty_q)
            delta = jnp.linalg.solve(hess, grad.ravel()).reshape(theta_qxc.shape)
            tried = theta_qxc[None] - damping[:, None, None] * delta[None]
            return tried[jnp.argmin(jax.vmap(objective)(tried))]

        theta = jax.lax.fori_loop(0, steps, step, jnp.zeros((Q, n_channels)))
        # the softmax ignores a shift shared by all level logits: centre the biases
        shift = jnp.where(is_cat, jnp.sum(theta[-1] * level_c) / jnp.sum(level_c), 0.0)
        return theta[:-1], theta[-1] - shift

    return jax.vmap(one)(slots_uxp, valid_uxp, target_uxn, is_cat_u, level_uxc, l2_u)


@functools.partial(jax.jit, static_argnames="steps")
def adam_mlp(zs_nxs, weight_n, mask_uxs, target_uxn, is_cat_u, level_uxc, w1_uxsxh, w2_uxhxc,
             l2, lr, *, steps: int):
    """One-hidden-layer ReLU MLPs of U tasks by full-batch Adam (``steps`` steps, learning
    rate ``lr``) from the given initial weights (biases start at zero). The first layer reads
    all S slots through the task's parent mask ``mask_uxs``, so the U hidden layers are one
    matrix product [n, S] x [S, U * H] (Adam is elementwise: summing the task losses trains
    the tasks independently). Returns w1 [U, S, H] (zero off the mask), b1 [U, H],
    w2 [U, H, C], b [U, C]."""
    opt = optax.adam(lr)
    wsum = weight_n.sum()
    row_loss = jax.vmap(_row_loss)  # over tasks

    def objective(params):
        w1 = params["w1"] * mask_uxs[:, :, None]
        h_uxnxh = jax.nn.relu(jnp.einsum("ns,ush->unh", zs_nxs, w1) + params["b1"][:, None])
        out_uxnxc = jnp.einsum("unh,uhc->unc", h_uxnxh, params["w2"]) + params["b"][:, None]
        rows_uxn = row_loss(out_uxnxc, target_uxn, is_cat_u, level_uxc)
        return (jnp.sum(rows_uxn @ weight_n) / wsum
                + 0.5 * l2 * (jnp.sum(w1 ** 2) + jnp.sum(params["w2"] ** 2)))

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(objective)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    U, _, H = w1_uxsxh.shape
    params = {"w1": w1_uxsxh * mask_uxs[:, :, None], "b1": jnp.zeros((U, H)), "w2": w2_uxhxc,
              "b": jnp.zeros((U, w2_uxhxc.shape[2]))}
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params | {"w1": params["w1"] * mask_uxs[:, :, None]}
